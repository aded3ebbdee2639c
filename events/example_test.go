package events_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed"
	"github.com/boreas/operator-bridge/operator"
)

// A deploy request in binary mode: attributes in ce- headers (any case,
// percent-encoded), the data in the body.
func ExampleDecodeDeployRequest() {
	h := nats.Header{
		"ce-specversion": {"1.0"},
		"Ce-Id":          {"req-42"},
		"ce-source":      {"/master-service/eu%2D1"},
		"ce-type":        {events.TypeDeployRequest},
		"Content-Type":   {"application/json"},
	}
	body := []byte(`{"app": "my-app", "version": "v1.2.3", "deployments": [
		{"version": "v1.2.3", "percent": 0.2}, {"version": "v1.2.2", "percent": 0.8}]}`)

	env, req, err := events.DecodeDeployRequest("deploy.request.env-001", h, body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(env.ID, env.Environment, env.Source, env.Mode)
	for _, d := range req.Effective() {
		fmt.Println(d.Version, d.Percent)
	}
	// Output:
	// req-42 env-001 /master-service/eu-1 binary
	// v1.2.3 0.2
	// v1.2.2 0.8
}

// An invalid request that can still be answered: the error names the
// contract's code and the field, and the Envelope keeps the request's id.
func ExampleError() {
	body := []byte(`{"specversion": "1.0", "id": "req-7", "source": "/ms", "type": "io.boreas.deploy.request.v1",
		"data": {"app": "my-app", "version": "v2", "deployments": [{"version": "v2", "percent": 0.7}, {"version": "v1", "percent": 0.7}]}}`)
	env, _, err := events.DecodeDeployRequest("deploy.request.env-001", nil, body)
	var e *events.Error
	if errors.As(err, &e) {
		fmt.Println(env.ID, e.Code, e.Field)
	}
	fmt.Println(err)

	_, _, err = events.DecodeDeployRequest("deploy.request.env-001", nil, []byte(`{"app": "my-app"}`))
	fmt.Println(errors.Is(err, events.ErrUnidentifiable))
	// Output:
	// req-7 invalid_data deployments
	// invalid_data: deployments: percents add up to 1.4, more than 1
	// true
}

// The README's example of master-service's side, against a bridge with the
// mock operator on an embedded NATS server.
func ExampleClient() {
	dir, err := os.MkdirTemp("", "events-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ns, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		panic(err)
	}
	defer ns.Stop()
	envFile := filepath.Join(dir, "envs.yaml")
	if err := os.WriteFile(envFile, []byte("[{id: env-001, type: mock}]"), 0o600); err != nil {
		panic(err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	factory, err := operator.NewFactory(operator.DefaultSettings())
	if err != nil {
		panic(err)
	}
	b, err := bridge.New(nc, factory, bridge.Config{EnvironmentsFile: envFile})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	for !b.Ready() {
		time.Sleep(10 * time.Millisecond)
	}

	if err := publishDeploys(context.Background(), ns.ClientURL()); err != nil {
		fmt.Println(err)
	}
	stop()
	<-done
	// Output:
	// succeeded applied v1.2.3 to my-app
	// my-app v1.2.3 100% health 100
	// env-001 mock active: true
	// published v1.2.4
	// my-app v1.2.3 succeeded
	// my-app v1.2.4 succeeded
}

func publishDeploys(ctx context.Context, url string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	client, err := events.NewClient(nc, events.WithSource("/master-service/eu-1"))
	if err != nil {
		return err
	}
	since := time.Now()

	// Deploy waits for the result: succeeded, failed, rejected or superseded.
	res, err := client.Deploy(ctx, "env-001", events.DeployRequest{App: "my-app", Version: "v1.2.3"})
	if err != nil {
		return err // no result (ctx ended, the client closed)
	}
	if res.Outcome != events.Succeeded {
		return fmt.Errorf("%s: %s: %s", res.Outcome, res.Error.Code, res.Error.Message)
	}
	fmt.Println(res.Outcome, res.Message)

	st, err := client.Status(ctx, "env-001", "my-app") // request/reply, never queued
	if err != nil {
		return err
	}
	for _, v := range st.Status.Versions {
		fmt.Printf("%s %s %.0f%% health %d\n", st.App, v.Version, v.Percent*100, v.Healthy.Level)
	}

	envs, err := client.Environments(ctx)
	if err != nil {
		return err
	}
	for _, e := range envs {
		fmt.Println(e.ID, e.Type, "active:", e.Active)
	}

	// PublishDeploy returns once the request is stored, without waiting.
	req := events.DeployRequest{App: "my-app", Version: "v1.2.4"}
	if _, err := client.PublishDeploy(ctx, "env-001", req); err != nil {
		return err
	}
	fmt.Println("published", req.Version)

	// Watch replays the stored results since a time, then follows new ones.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	n := 0
	for w, err := range client.Watch(wctx, events.WatchOptions{Subjects: []string{"deploy.result.>"}, StartTime: since}) {
		if err != nil {
			return err
		}
		r, err := w.DeployResult()
		if err != nil {
			return err
		}
		fmt.Println(r.App, r.Version, r.Outcome)
		if n++; n == 2 {
			break
		}
	}
	return nil
}
