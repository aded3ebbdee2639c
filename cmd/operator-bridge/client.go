package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

// bridgeClient is what the client commands use to speak the contract: the
// events package's Client, plus the connection and JetStream for what the
// Client does not do (deploy's stored place).
type bridgeClient struct {
	*events.Client
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
	source := "/operator-bridge-cli/" + who + "/" + host
	ec, err := events.NewClient(nc, events.WithSource(source))
	if err != nil {
		return nil, err
	}
	return &bridgeClient{Client: ec, nc: nc, js: js, source: source}, nil
}

// session connects a client command to NATS and returns its bridge client
// and the function that closes the connection.
func (cf *clientFlags) session(name string) (*bridgeClient, func(), error) {
	nc, err := cf.connect(name)
	if err != nil {
		return nil, nil, err
	}
	bc, err := newBridgeClient(nc, name)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return bc, nc.Close, nil
}

// callContext bounds one call by --timeout, and ends it early when NATS
// refuses the connection's permissions.
func (cf *clientFlags) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancelTimeout := context.WithTimeout(ctx, cf.timeout)
	ctx, cancelRefused := cf.untilRefused(ctx)
	return ctx, func() { cancelRefused(); cancelTimeout() }
}

// published is a request stored by JetStream.
type published struct {
	ID       string    `json:"request_id"`
	Subject  string    `json:"subject"`
	Sequence uint64    `json:"seq"` // in the DEPLOY stream
	Stored   time.Time `json:"-"`   // about when (the stream's time is the bridge's clock)
}

// publishDeploy publishes a deploy request and returns where JetStream
// stored it. id is the event id ("" for a new one); sent again within the
// duplicate window, the request is stored once and its first place is
// returned.
func (bc *bridgeClient) publishDeploy(ctx context.Context, env, id string, req events.DeployRequest) (published, error) {
	if id == "" {
		id = events.NewEventID() // chosen here, so a timeout can name it
	}
	p := published{ID: id, Subject: events.DeployRequestSubject(env)}
	msg, _, err := events.NewDeployRequest(bc.source, env, req, events.WithID(id))
	if err != nil {
		return p, err
	}
	ack, err := bc.js.PublishMsg(ctx, msg)
	if err != nil {
		return p, fmt.Errorf("publish %s: %w", p.Subject, err)
	}
	p.Sequence, p.Stored = ack.Sequence, time.Now()
	return p, nil
}

// status asks the bridge's request/reply endpoint for app's status in env.
func (bc *bridgeClient) status(ctx context.Context, env, app string) (events.StatusResult, error) {
	if !events.ValidEnvironmentID(env) {
		return events.StatusResult{}, usageError("status: %q is not an environment ID", env)
	}
	sr, err := bc.Status(ctx, env, app)
	if err != nil {
		return sr, requestError(err)
	}
	return sr, nil
}

// environments lists the bridge's environments.
func (bc *bridgeClient) environments(ctx context.Context) ([]events.EnvironmentInfo, error) {
	envs, err := bc.Environments(ctx)
	if err != nil {
		return nil, requestError(err)
	}
	return envs, nil
}

// requestError gives a failed request/reply call its exit code: no bridge
// or no answer is 3.
func requestError(err error) error {
	if errors.Is(err, nats.ErrNoResponders) {
		return withCode(exitTimeout, fmt.Errorf("%w (is operator-bridge running?)", err))
	}
	if isTimeout(err) {
		return withCode(exitTimeout, err)
	}
	return err
}

// streamOf names the stream that stores subject (docs/contract.md).
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

// parseFrom reads --from into the start of events.WatchOptions: new, all,
// last, a duration ago, a time or a stream sequence.
func parseFrom(s string, now time.Time) (events.WatchOptions, error) {
	switch strings.ToLower(s) {
	case "", "new", "now":
		return events.WatchOptions{New: true}, nil
	case "all", "start", "beginning", "0":
		return events.WatchOptions{}, nil
	case "last":
		return events.WatchOptions{LastPerSubject: true}, nil
	}
	var seq uint64
	if _, err := fmt.Sscanf(s, "%d", &seq); err == nil && fmt.Sprint(seq) == s {
		return events.WatchOptions{StartSeq: seq}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return events.WatchOptions{StartTime: now.Add(-d)}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return events.WatchOptions{StartTime: t}, nil
		}
	}
	return events.WatchOptions{}, fmt.Errorf("--from %q: want new, all, last, a duration (15m), a time (RFC 3339) or a stream sequence", s)
}

// watchItem is one message (or the error that ended a stream's watch).
type watchItem struct {
	events.Watched
	Stream string
	Err    error
}

// watch follows subjects from a start point, one events.Client watch per
// stream, delivering to out until ctx ends or a watch fails (its error is
// delivered last).
func (bc *bridgeClient) watch(ctx context.Context, subjects []string, from events.WatchOptions, out chan<- watchItem) error {
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
	for _, st := range order {
		opts := from
		opts.Stream, opts.Subjects = st, byStream[st]
		go func() {
			for w, err := range bc.Watch(ctx, opts) {
				if err != nil && w.Data == nil {
					// The watch itself failed (a message that does not
					// decode still has its data and is shown as such).
					select {
					case out <- watchItem{Stream: opts.Stream, Err: err}:
					case <-ctx.Done():
					}
					return
				}
				select {
				case out <- watchItem{Watched: w, Stream: opts.Stream}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return nil
}
