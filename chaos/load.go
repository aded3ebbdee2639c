package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

// LoadSource is the CloudEvent source of the suite's requests.
const LoadSource = "/chaos/load"

// Load publishes deploy requests over Keys at a steady rate. Each key's
// versions rise; some requests arrive late (a CloudEvent time older than
// the key's newest), some are sent again with the same Nats-Msg-Id inside
// the duplicate window (JetStream keeps one copy), some are replayed (an old
// request published again as a new message, same id and body). Its random
// choices come from Rng; publishes run concurrently, each retried with the
// same Nats-Msg-Id while NATS is in trouble. Bursts add many at once.
type Load struct {
	JS   jetstream.JetStream
	Keys []Key
	Rng  *rand.Rand

	version int
	sent    []sentMsg // every distinct message published, oldest first
	replays int
	burst   chan int

	once sync.Once

	// Counts of what was published (or tried), by kind.
	New, Late, Resent, Replayed, Bursts, Failed atomic.Int64
}

type sentMsg struct {
	msg *nats.Msg
	at  time.Time
}

func (l *Load) init() { l.once.Do(func() { l.burst = make(chan int, 16) }) }

// Burst asks Run to publish n new requests at once, half of them on one
// hot key, so that many are in flight when a fault hits.
func (l *Load) Burst(n int) {
	l.init()
	select {
	case l.burst <- n:
	default: // bursts enough are queued
	}
}

// Run publishes rate requests a second until ctx ends, then waits for the
// publishes under way.
func (l *Load) Run(ctx context.Context, rate float64) {
	l.init()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 64)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	send := func(msg *nats.Msg, err error) bool {
		if err != nil {
			l.Failed.Add(1)
			return true
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if !l.publish(context.WithoutCancel(ctx), msg) {
				l.Failed.Add(1)
			}
		})
		return true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-l.burst:
			hot := l.Keys[l.Rng.IntN(len(l.Keys))]
			for i := range n {
				key := l.Keys[l.Rng.IntN(len(l.Keys))]
				if i%2 == 0 {
					key = hot
				}
				l.Bursts.Add(1)
				if !send(l.request(key, time.Now())) {
					return
				}
			}
		case <-tick.C:
			if !send(l.next()) {
				return
			}
		}
	}
}

// next chooses and builds the next message.
func (l *Load) next() (*nats.Msg, error) {
	now := time.Now()
	p := l.Rng.Float64()
	switch {
	case p < 0.07 && len(l.sent) > 0:
		// Sent again inside the duplicate window: one of the last few.
		s := l.sent[len(l.sent)-1-l.Rng.IntN(min(len(l.sent), 20))]
		if now.Sub(s.at) < time.Minute {
			l.Resent.Add(1)
			return copyMsg(s.msg, ""), nil
		}
	case p < 0.14 && len(l.sent) > 0:
		// Replayed: an old stored request as a new message.
		s := l.sent[l.Rng.IntN(len(l.sent))]
		if now.Sub(s.at) > 3*time.Second {
			l.replays++
			l.Replayed.Add(1)
			return copyMsg(s.msg, fmt.Sprintf("%s-replay-%d", s.msg.Header.Get(events.HeaderMsgID), l.replays)), nil
		}
	}
	key := l.Keys[l.Rng.IntN(len(l.Keys))]
	t := now
	if l.Rng.Float64() < 0.08 {
		// Late: older than requests of the key already published.
		t = now.Add(-time.Duration(300+l.Rng.IntN(2700)) * time.Millisecond)
		l.Late.Add(1)
	} else {
		l.New.Add(1)
	}
	return l.request(key, t)
}

// request builds a new request for key at time t, with a version and id of
// its own.
func (l *Load) request(key Key, t time.Time) (*nats.Msg, error) {
	l.version++
	msg, _, err := events.NewDeployRequest(LoadSource, key.Env,
		events.DeployRequest{App: key.App, Version: fmt.Sprintf("1.%d.0", l.version)},
		events.WithID(fmt.Sprintf("req-%06d", l.version)), events.WithTime(t))
	if err != nil {
		return nil, err
	}
	l.sent = append(l.sent, sentMsg{msg, time.Now()})
	return msg, nil
}

// copyMsg copies m, with another Nats-Msg-Id when msgID is not empty.
func copyMsg(m *nats.Msg, msgID string) *nats.Msg {
	c := &nats.Msg{Subject: m.Subject, Header: nats.Header{}, Data: m.Data}
	for k, v := range m.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	if msgID != "" {
		c.Header.Set(events.HeaderMsgID, msgID)
	}
	return c
}

// publish publishes msg, trying again under the same Nats-Msg-Id for up to
// 30 s; it reports whether JetStream acknowledged it.
func (l *Load) publish(ctx context.Context, msg *nats.Msg) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := l.JS.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
	return false
}
