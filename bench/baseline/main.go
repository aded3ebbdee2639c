// Command baseline is the bare minimum of the bridge's job, the yardstick
// that `make bench` measures the bridge against: it pull-consumes
// deploy.request.>, calls one operator over HTTP with a keep-alive pool,
// publishes a result asynchronously and acks each request once its result
// is stored. It has none of the contract's guarantees (no validation, no
// order, no retries, no metrics) and is not part of the operator-bridge
// binary.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

type request struct {
	ID   string `json:"id"`
	Data struct {
		App         string            `json:"app"`
		Version     string            `json:"version"`
		Deployments []json.RawMessage `json:"deployments"`
	} `json:"data"`
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	natsURL := fs.String("nats", nats.DefaultURL, "NATS server URL")
	opURL := fs.String("operator", "http://127.0.0.1:8081", "Kubernetes-style operator base URL (POST /api/apply)")
	inFlight := fs.Int("in-flight", 256, "requests handled at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL, nats.Name("baseline"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4*(*inFlight)))
	if err != nil {
		return err
	}
	for _, sc := range events.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return err
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamDeploy, jetstream.ConsumerConfig{
		Durable: "baseline", FilterSubject: "deploy.request.>", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxAckPending: 20_000,
	})
	if err != nil {
		return err
	}
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConns: *inFlight, MaxIdleConnsPerHost: *inFlight}, Timeout: 10 * time.Second}
	applyURL := strings.TrimRight(*opURL, "/") + "/api/apply"
	sem := make(chan struct{}, *inFlight)

	handle := func(m jetstream.Msg) {
		defer func() { <-sem }()
		var req request
		if err := json.Unmarshal(m.Data(), &req); err != nil {
			_ = m.Term()
			return
		}
		env := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
		body, _ := json.Marshal(map[string]any{"app": req.Data.App, "version": req.Data.Version,
			"deployments": []map[string]any{{"version": req.Data.Version, "percent": 1}}})
		start := time.Now()
		outcome, success, message := "succeeded", true, ""
		resp, err := httpc.Post(applyURL, "application/json", bytes.NewReader(body))
		if err != nil {
			outcome, success, message = "failed", false, err.Error()
		} else {
			var ar struct {
				Success bool   `json:"success"`
				Message string `json:"message"`
			}
			_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ar)
			resp.Body.Close()
			if !ar.Success {
				outcome, success = "failed", false
			}
			message = ar.Message
		}
		meta, _ := m.Metadata()
		resultID := req.ID + "-" + strconv.FormatUint(meta.Sequence.Stream, 10)
		result, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": resultID, "source": "/baseline", "type": events.TypeDeployResult,
			"time": time.Now().UTC().Format(time.RFC3339Nano), "datacontenttype": "application/json",
			"subject": req.Data.App, "environment": env, "requestid": req.ID,
			"data": map[string]any{"request_id": req.ID, "environment": env, "app": req.Data.App, "version": req.Data.Version,
				"operator": "kubernetes", "outcome": outcome, "success": success, "message": message, "attempts": 1,
				"duration_ms": time.Since(start).Milliseconds()},
		})
		out := &nats.Msg{Subject: events.DeployResultSubject(env), Data: result,
			Header: nats.Header{"Content-Type": {events.ContentTypeStructured}, events.HeaderMsgID: {resultID}}}
		fut, err := js.PublishMsgAsync(out)
		if err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
		select {
		case <-fut.Ok():
			_ = m.Ack()
		case <-fut.Err():
			_ = m.NakWithDelay(time.Second)
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sem <- struct{}{}
		go handle(m)
	}, jetstream.PullMaxMessages(*inFlight))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "baseline: consuming deploy.request.> on %s, operator %s, %d in flight\n", *natsURL, *opURL, *inFlight)
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	for range *inFlight {
		sem <- struct{}{}
	}
	return nil
}
