// Command baseline is the bare minimum of the bridge's job, the yardstick
// that `make bench` measures the bridge against: it pull-consumes
// deploy.request.>, calls the request's environment's operator over HTTP
// with a keep-alive pool,
// publishes a result asynchronously and acks each request once its result
// is stored. It has none of the contract's guarantees (no validation, no
// order, no retries, no metrics, no logs) and is not part of the
// operator-bridge binary.
//
// To be a fair yardstick it does what it does the way the bridge does: the
// same NATS connection options and async-publish settings (jetstream.New's
// defaults), the same consumer settings (bridge.ConsumerConfigs) and number
// of requests handled at once, the same HTTP client pool
// (operator.NewHTTPClient) with the same per-call timeout, and it forwards
// the request's deployments (canary split, package) to the operator as
// they came. Run it with the bridge's Go runtime settings (bench/run.sh
// gives it the GOGC and GOMEMLIMIT that serve sets).
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

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
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
		App         string          `json:"app"`
		Version     string          `json:"version"`
		Deployments json.RawMessage `json:"deployments"`
	} `json:"data"`
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	natsURL := fs.String("nats", nats.DefaultURL, "NATS server URL")
	opURL := fs.String("operator", "http://127.0.0.1:8081", "Kubernetes-style operator base URL (POST /api/apply); {env} in it stands for the request's environment")
	inFlight := fs.Int("in-flight", 256, "requests handled at once (the bridge's MAX_IN_FLIGHT)")
	ackWait := fs.Duration("ack-wait", 30*time.Second, "the consumer's ack wait (the bridge's)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound of one operator call (the bridge's OPERATOR_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The bridge's connection options (cmd/operator-bridge connectServe).
	nc, err := nats.Connect(*natsURL, nats.Name("baseline"), nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second), nats.Timeout(5*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc) // async publishing as the bridge's: the defaults
	if err != nil {
		return err
	}
	for _, sc := range events.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return err
		}
	}
	cc0 := bridge.ConsumerConfigs(*ackWait, *inFlight)[events.StreamDeploy]
	cc0.Durable, cc0.Description = "baseline", "the bare loop of make bench"
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamDeploy, cc0)
	if err != nil {
		return err
	}
	httpc := operator.NewHTTPClient(nil)
	applyURL := strings.TrimRight(*opURL, "/") + "/api/apply"
	perEnv := strings.Contains(applyURL, "{env}")
	sem := make(chan struct{}, *inFlight)

	handle := func(m jetstream.Msg) {
		defer func() { <-sem }()
		var req request
		if err := json.Unmarshal(m.Data(), &req); err != nil {
			_ = m.Term()
			return
		}
		env := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
		deployments := req.Data.Deployments
		if len(deployments) == 0 || string(deployments) == "null" {
			deployments, _ = json.Marshal([]map[string]any{{"version": req.Data.Version, "percent": 1}})
		}
		body, _ := json.Marshal(map[string]any{"app": req.Data.App, "version": req.Data.Version, "deployments": deployments})
		start := time.Now()
		outcome, success, message := "succeeded", true, ""
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		url := applyURL
		if perEnv {
			url = strings.Replace(applyURL, "{env}", env, 1)
		}
		hreq, _ := http.NewRequestWithContext(cctx, http.MethodPost, url, bytes.NewReader(body))
		hreq.Header.Set("Content-Type", "application/json")
		resp, err := httpc.Do(hreq)
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
