package events

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// WatchOptions says what Watch delivers and from where. The zero value of
// the start fields delivers everything the stream holds.
type WatchOptions struct {
	// Subjects filters the stream, e.g. DeployResultSubject("env-001"),
	// "deploy.result.>" or "operator.health.>". Required; all must belong
	// to one stream.
	Subjects []string
	// Stream names the stream; by default it is the contract's stream of
	// the subjects (DEPLOY, STATUS, HEALTH or DEADLETTER).
	Stream string

	// At most one of the following; none means from the first message.

	// StartTime delivers the messages stored at or after it.
	StartTime time.Time
	// StartSeq delivers the messages from this stream sequence on.
	StartSeq uint64
	// New delivers only the messages stored after Watch starts.
	New bool
	// LastPerSubject delivers the last message of each subject, then the
	// new ones: with "operator.health.>", every environment's current
	// health, then its changes.
	LastPerSubject bool
}

// Watched is one message delivered by Watch.
type Watched struct {
	// Event is the decoded CloudEvent; its zero value when the message
	// could not be decoded (Watch then yields the error with it).
	Event    event.Event
	Subject  string    // NATS subject
	Sequence uint64    // stream sequence
	Stored   time.Time // when the stream stored the message
	Header   nats.Header
	Data     []byte // the message body
}

// DeployResult decodes the data of a deploy result event, validated
// against its schema.
func (w Watched) DeployResult() (DeployResult, error) {
	_, r, err := DecodeDeployResult(w.Header, w.Data)
	return r, err
}

// StatusResult decodes the data of a status result event.
func (w Watched) StatusResult() (StatusResult, error) {
	_, r, err := DecodeStatusResult(w.Header, w.Data)
	return r, err
}

// Health decodes the data of an operator health event.
func (w Watched) Health() (Health, error) {
	_, r, err := DecodeHealth(w.Header, w.Data)
	return r, err
}

// followHeartbeat is the heartbeat this package's ordered consumers ask for,
// instead of nats.go's 5 s. nats.go's Consume and Messages (v1.55, v1.56)
// can miss the moment to pull more, when a batch's last messages are handled
// while the previous pull request is still being sent; the ordered consumer
// then starts again only after two missed heartbeats.
const followHeartbeat = time.Second

// Watch delivers the messages of a stream's subjects in stream order,
// through an ordered consumer (no acknowledgements, nothing left behind on
// the server), from the point WatchOptions names: for dashboards and
// replays. A message that is not a valid CloudEvent is yielded with its
// error and the loop may go on. The sequence ends when ctx is done or the
// loop breaks; an error setting up the consumer or losing it is yielded
// last.
//
//	for w, err := range client.Watch(ctx, events.WatchOptions{Subjects: []string{"deploy.result.>"}}) {
//		if err != nil { ... }
//		r, err := w.DeployResult()
//		...
//	}
func (c *Client) Watch(ctx context.Context, opts WatchOptions) iter.Seq2[Watched, error] {
	return func(yield func(Watched, error) bool) {
		stream, cfg, err := opts.consumerConfig()
		if err != nil {
			yield(Watched{}, err)
			return
		}
		cons, err := c.js.OrderedConsumer(ctx, stream, cfg)
		if err != nil {
			if ctx.Err() == nil {
				yield(Watched{}, fmt.Errorf("watch %s: %w", stream, err))
			}
			return
		}
		msgs, err := cons.Messages(jetstream.PullHeartbeat(followHeartbeat))
		if err != nil {
			yield(Watched{}, fmt.Errorf("watch %s: %w", stream, err))
			return
		}
		defer msgs.Stop()
		for {
			m, err := msgs.Next(jetstream.NextContext(ctx))
			if err != nil {
				if ctx.Err() == nil {
					yield(Watched{}, fmt.Errorf("watch %s: %w", stream, err))
				}
				return
			}
			w := Watched{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
			if meta, err := m.Metadata(); err == nil {
				w.Sequence = meta.Sequence.Stream
				w.Stored = meta.Timestamp
			}
			w.Event, err = Decode(w.Header, w.Data)
			if !yield(w, err) {
				return
			}
		}
	}
}

func (o WatchOptions) consumerConfig() (string, jetstream.OrderedConsumerConfig, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: o.Subjects}
	if len(o.Subjects) == 0 {
		return "", cfg, errors.New("watch: no subjects")
	}
	stream := o.Stream
	if stream == "" {
		for _, s := range o.Subjects {
			name := streamOf(s)
			if name == "" || (stream != "" && name != stream) {
				return "", cfg, fmt.Errorf("watch: subjects %q are not all in one of the contract's streams; name the stream", o.Subjects)
			}
			stream = name
		}
	}
	starts := 0
	switch {
	case !o.StartTime.IsZero():
		starts++
		t := o.StartTime
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	}
	if o.StartSeq > 0 {
		starts++
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = o.StartSeq
	}
	if o.New {
		starts++
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	if o.LastPerSubject {
		starts++
		cfg.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
	}
	if starts > 1 {
		return "", cfg, errors.New("watch: set at most one of StartTime, StartSeq, New and LastPerSubject")
	}
	return stream, cfg, nil
}

// streamOf names the contract's stream holding subject ("" when none).
func streamOf(subject string) string {
	switch {
	case strings.HasPrefix(subject, "deploy."):
		return StreamDeploy
	case strings.HasPrefix(subject, "status."):
		return StreamStatus
	case strings.HasPrefix(subject, PrefixHealth):
		return StreamHealth
	case strings.HasPrefix(subject, PrefixDeadLetter):
		return StreamDeadLetter
	}
	return ""
}
