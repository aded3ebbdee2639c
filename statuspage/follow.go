package statuspage

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

// stream is one of the streams the board follows.
type stream int

const (
	stHealth stream = iota
	stDeploy
	stDeadLetter
	numStreams
)

// TypeDeployProgress is the CloudEvent type of rollout progress events
// (deploy.progress.<env>).
const TypeDeployProgress = "io.boreas.deploy.progress.v1"

// follower says what to read of a stream, from where, and what to do with
// each message.
type follower struct {
	id       stream
	name     string
	subjects []string
	// start is where to begin when nothing has been read yet.
	start  func(ctx context.Context, st jetstream.Stream) (jetstream.OrderedConsumerConfig, error)
	handle func(m jetstream.Msg, meta *jetstream.MsgMetadata)
}

// followers are the page's three subscriptions.
func (p *Page) followers() []follower {
	return []follower{
		{
			id: stHealth, name: events.StreamHealth, subjects: []string{events.PrefixHealth + ">"},
			start: func(context.Context, jetstream.Stream) (jetstream.OrderedConsumerConfig, error) {
				return jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}, nil
			},
			handle: p.onHealth,
		},
		{
			id: stDeploy, name: events.StreamDeploy, subjects: []string{events.PrefixDeployResult + ">", "deploy.progress.>"},
			start: func(ctx context.Context, st jetstream.Stream) (jetstream.OrderedConsumerConfig, error) {
				return lastN(ctx, st, uint64(p.cfg.Lookback))
			},
			handle: p.onDeploy,
		},
		{
			id: stDeadLetter, name: events.StreamDeadLetter, subjects: []string{events.PrefixDeadLetter + ">"},
			start: func(ctx context.Context, st jetstream.Stream) (jetstream.OrderedConsumerConfig, error) {
				if err := p.countDeadLetters(ctx, st); err != nil {
					return jetstream.OrderedConsumerConfig{}, err
				}
				return lastN(ctx, st, uint64(p.cfg.DeadLetters))
			},
			handle: p.onDeadLetter,
		},
	}
}

// lastN starts at the last n messages of the stream.
func lastN(ctx context.Context, st jetstream.Stream, n uint64) (jetstream.OrderedConsumerConfig, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return jetstream.OrderedConsumerConfig{}, err
	}
	if last := info.State.LastSeq; last > n && last-n+1 > info.State.FirstSeq {
		return jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: last - n + 1}, nil
	}
	return jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}, nil
}

func (p *Page) countDeadLetters(ctx context.Context, st jetstream.Stream) error {
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	p.board.setDeadCount(info.State.Msgs, info.State.LastSeq)
	return nil
}

// follow reads f's stream with an ordered consumer until ctx ends. After an
// error (the stream missing, no permission) it starts again after the last
// message it handled, waiting RetryDelay, doubled after each quick failure
// up to a minute.
func (p *Page) follow(ctx context.Context, f follower) {
	var last uint64
	delay := p.cfg.RetryDelay
	for {
		began := time.Now()
		err := p.followOnce(ctx, f, &last)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			delay = p.cfg.RetryDelay
		}
		p.log.Warn("status page: following a stream", "stream", f.name, "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		delay = min(2*delay, time.Minute)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (p *Page) followOnce(ctx context.Context, f follower, last *uint64) error {
	st, err := p.cfg.JetStream.Stream(ctx, f.name)
	if err != nil {
		return err
	}
	var cfg jetstream.OrderedConsumerConfig
	if *last > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: *last + 1}
	} else if cfg, err = f.start(ctx, st); err != nil {
		return err
	}
	cfg.FilterSubjects = f.subjects
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	// A small buffer: the page needs no throughput, only the latest state.
	// A heartbeat every second, not nats.go's 5 s: nats.go's Messages (v1.55,
	// v1.56) can miss the moment to pull more when a batch's last messages
	// are read while its previous pull request is still being sent, and the
	// ordered consumer starts again only after two missed heartbeats.
	msgs, err := cons.Messages(jetstream.PullMaxMessages(64), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return err
	}
	defer msgs.Stop()
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		p.board.setSynced(f.id)
	}
	for {
		m, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		*last = meta.Sequence.Stream
		f.handle(m, meta)
		if meta.NumPending == 0 {
			p.board.setSynced(f.id)
		}
	}
}

// envelope is what the page reads of a stored CloudEvent.
type envelope struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// decode reads an event the bridge stored: structured JSON (what the bridge
// publishes) directly, anything else through the events package.
func decode(h nats.Header, body []byte) (envelope, bool) {
	var e envelope
	if err := json.Unmarshal(body, &e); err == nil && e.Type != "" && len(e.Data) > 0 {
		return e, true
	}
	ev, err := events.Decode(h, body)
	if err != nil {
		return envelope{}, false
	}
	return envelope{ID: ev.ID(), Type: ev.Type(), Time: ev.Time(), Data: ev.Data()}, true
}

func (p *Page) onHealth(m jetstream.Msg, meta *jetstream.MsgMetadata) {
	e, ok := decode(m.Headers(), m.Data())
	var h events.Health
	if !ok || e.Type != events.TypeHealth || json.Unmarshal(e.Data, &h) != nil {
		return
	}
	if h.Environment == "" {
		h.Environment = strings.TrimPrefix(m.Subject(), events.PrefixHealth)
	}
	if h.CheckedAt.IsZero() {
		h.CheckedAt = meta.Timestamp
	}
	p.board.putHealth(h)
}

func (p *Page) onDeploy(m jetstream.Msg, meta *jetstream.MsgMetadata) {
	e, ok := decode(m.Headers(), m.Data())
	if !ok {
		return
	}
	at := e.Time
	if at.IsZero() {
		at = meta.Timestamp
	}
	switch e.Type {
	case events.TypeDeployResult:
		r := result{ID: e.ID, Time: at}
		if json.Unmarshal(e.Data, &r.DeployResult) == nil {
			p.board.putResult(r)
		}
	case TypeDeployProgress:
		r := rollout{Time: at}
		if json.Unmarshal(e.Data, &r.progress) == nil && r.RequestID != "" {
			p.board.putProgress(r)
		}
	}
}

func (p *Page) onDeadLetter(m jetstream.Msg, meta *jetstream.MsgMetadata) {
	h := m.Headers()
	d := deadLetter{
		Seq: meta.Sequence.Stream, Time: meta.Timestamp, Size: len(m.Data()),
		Subject: h.Get(events.HeaderBridgeSubject), Reason: h.Get(events.HeaderBridgeError),
	}
	if d.Subject == "" {
		d.Subject = strings.TrimPrefix(m.Subject(), events.PrefixDeadLetter)
	}
	p.board.putDeadLetter(d)
}
