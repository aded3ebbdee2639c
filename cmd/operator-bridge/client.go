package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

// bridgeClient speaks the wire contract to a bridge through NATS: the
// operations of the client commands and of the demo.
//
// It is written here, against the events package's encoders and decoders,
// because events.Client did not exist yet when this command was written.
type bridgeClient struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	source string
}

func newBridgeClient(nc *nats.Conn, who string) (*bridgeClient, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return &bridgeClient{nc: nc, js: js, source: "/operator-bridge-cli/" + who + "/" + host}, nil
}

// published is a request stored by JetStream.
type published struct {
	ID        string `json:"request_id"`
	Subject   string `json:"subject"`
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// deploy publishes a deploy request and, when wait, waits for its result.
func (bc *bridgeClient) deploy(ctx context.Context, env string, req events.DeployRequest, wait bool, opts ...events.EventOption) (published, *events.DeployResult, error) {
	msg, id, err := events.NewDeployRequest(bc.source, env, req, opts...)
	if err != nil {
		return published{}, nil, usageError("deploy: %v", err)
	}
	var results chan events.DeployResult
	if wait {
		// Subscribe before publishing, so the result cannot slip past.
		results = make(chan events.DeployResult, 1) // the one result we wait for
		sub, err := bc.nc.Subscribe(events.DeployResultSubject(env), func(m *nats.Msg) {
			_, res, err := events.DecodeDeployResult(m.Header, m.Data)
			if err == nil && res.RequestID == id {
				select {
				case results <- res:
				default:
				}
			}
		})
		if err != nil {
			return published{}, nil, err
		}
		defer sub.Unsubscribe()
		if err := bc.nc.FlushWithContext(ctx); err != nil {
			return published{}, nil, err
		}
	}
	ack, err := bc.js.PublishMsg(ctx, msg)
	if err != nil {
		return published{}, nil, fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	p := published{ID: id, Subject: msg.Subject, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
	if !wait {
		return p, nil, nil
	}
	select {
	case res := <-results:
		return p, &res, nil
	case <-ctx.Done():
		return p, nil, fmt.Errorf("no result for request %s (DEPLOY seq %d): %w", id, ack.Sequence, ctx.Err())
	}
}

// status asks the bridge's request/reply endpoint for app's status in env.
func (bc *bridgeClient) status(ctx context.Context, env, app string) (events.StatusResult, error) {
	if !events.ValidEnvironmentID(env) {
		return events.StatusResult{}, usageError("status: %q is not an environment ID", env)
	}
	body, _ := json.Marshal(events.StatusQuery{App: app})
	reply, err := bc.nc.RequestWithContext(ctx, events.StatusEndpointSubject(env), body)
	if err != nil {
		return events.StatusResult{}, requestError(events.StatusEndpointSubject(env), err)
	}
	ev, err := events.Decode(reply.Header, reply.Data)
	if err != nil {
		return events.StatusResult{}, fmt.Errorf("status reply: %w", err)
	}
	var sr events.StatusResult
	if err := json.Unmarshal(ev.Data(), &sr); err != nil {
		return events.StatusResult{}, fmt.Errorf("status reply data: %w", err)
	}
	return sr, nil
}

// environments lists the bridge's environments.
func (bc *bridgeClient) environments(ctx context.Context) ([]events.EnvironmentInfo, error) {
	reply, err := bc.nc.RequestWithContext(ctx, events.SubjectEnvironments, nil)
	if err != nil {
		return nil, requestError(events.SubjectEnvironments, err)
	}
	var envs []events.EnvironmentInfo
	if err := json.Unmarshal(reply.Data, &envs); err != nil {
		return nil, fmt.Errorf("environments reply: %w (%.200q)", err, reply.Data)
	}
	return envs, nil
}

// requestError explains a failed request/reply call: no bridge or no answer
// is exit code 3.
func requestError(subject string, err error) error {
	if errors.Is(err, nats.ErrNoResponders) {
		return withCode(exitTimeout, fmt.Errorf("no bridge answers on %s (is operator-bridge running?)", subject))
	}
	if isTimeout(err) {
		return withCode(exitTimeout, fmt.Errorf("%s: no answer: %w", subject, err))
	}
	return fmt.Errorf("%s: %w", subject, err)
}

// streamOf names the stream that stores subject (contract §1).
func streamOf(subject string) (string, error) {
	switch {
	case strings.HasPrefix(subject, "deploy."):
		return events.StreamDeploy, nil
	case strings.HasPrefix(subject, "status."):
		return events.StreamStatus, nil
	case strings.HasPrefix(subject, events.PrefixHealth):
		return events.StreamHealth, nil
	case strings.HasPrefix(subject, events.PrefixDeadLetter):
		return events.StreamDeadLetter, nil
	}
	return "", fmt.Errorf("subject %q is in none of the bridge's streams (deploy.>, status.>, operator.health.>, deadletter.>)", subject)
}

// startPoint is where a watch starts.
type startPoint struct {
	policy jetstream.DeliverPolicy
	seq    uint64
	time   time.Time
}

// parseFrom reads --from: new, all, last, a duration ago, a time or a
// stream sequence.
func parseFrom(s string, now time.Time) (startPoint, error) {
	switch strings.ToLower(s) {
	case "", "new", "now":
		return startPoint{policy: jetstream.DeliverNewPolicy}, nil
	case "all", "start", "beginning":
		return startPoint{policy: jetstream.DeliverAllPolicy}, nil
	case "last":
		return startPoint{policy: jetstream.DeliverLastPerSubjectPolicy}, nil
	}
	var seq uint64
	if _, err := fmt.Sscanf(s, "%d", &seq); err == nil && fmt.Sprint(seq) == s {
		if seq == 0 {
			return startPoint{policy: jetstream.DeliverAllPolicy}, nil
		}
		return startPoint{policy: jetstream.DeliverByStartSequencePolicy, seq: seq}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return startPoint{policy: jetstream.DeliverByStartTimePolicy, time: now.Add(-d)}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return startPoint{policy: jetstream.DeliverByStartTimePolicy, time: t}, nil
		}
	}
	return startPoint{}, fmt.Errorf("--from %q: want new, all, last, a duration (15m), a time (RFC 3339) or a stream sequence", s)
}

// watched is one message a watch delivers.
type watched struct {
	Stream   string
	Sequence uint64
	Subject  string
	Header   nats.Header
	Data     []byte
	Time     time.Time // when JetStream stored it
}

// watch follows subjects from a start point with one ordered consumer per
// stream, delivering to out until ctx ends. It returns once every consumer is
// set up; the consumers stop when ctx ends.
func (bc *bridgeClient) watch(ctx context.Context, subjects []string, from startPoint, out chan<- watched) error {
	byStream := map[string][]string{}
	var order []string
	for _, s := range subjects {
		st, err := streamOf(s)
		if err != nil {
			return usageError("watch: %v", err)
		}
		if _, ok := byStream[st]; !ok {
			order = append(order, st)
		}
		byStream[st] = append(byStream[st], s)
	}
	var ccs []jetstream.ConsumeContext
	stopAll := func() {
		for _, cc := range ccs {
			cc.Stop()
		}
	}
	for _, st := range order {
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: byStream[st], DeliverPolicy: from.policy}
		switch from.policy {
		case jetstream.DeliverByStartSequencePolicy:
			cfg.OptStartSeq = from.seq
		case jetstream.DeliverByStartTimePolicy:
			t := from.time
			cfg.OptStartTime = &t
		}
		cons, err := bc.js.OrderedConsumer(ctx, st, cfg)
		if err != nil {
			stopAll()
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("watch: stream %s not found (has the bridge started on this NATS?)", st)
			}
			if isTimeout(err) || errors.Is(err, jetstream.ErrNoStreamResponse) {
				return withCode(exitTimeout, fmt.Errorf("watch: stream %s: %w", st, err))
			}
			return fmt.Errorf("watch: stream %s: %w", st, err)
		}
		stream := st
		cc, err := cons.Consume(func(m jetstream.Msg) {
			w := watched{Stream: stream, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
			if md, err := m.Metadata(); err == nil {
				w.Sequence, w.Time = md.Sequence.Stream, md.Timestamp
			}
			select {
			case out <- w:
			case <-ctx.Done():
			}
		})
		if err != nil {
			stopAll()
			return fmt.Errorf("watch: stream %s: %w", st, err)
		}
		ccs = append(ccs, cc)
	}
	go func() {
		<-ctx.Done()
		stopAll()
	}()
	return nil
}
