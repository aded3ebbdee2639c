package bridge

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

// deadLetter copies a message that cannot be identified to
// deadletter.<subject>, body and headers unchanged plus the reason and its
// origin, and terminates it once the copy is stored. If the copy cannot be
// stored the message stays and comes back.
func (b *Bridge) deadLetter(ctx context.Context, m jetstream.Msg, reason string) {
	h := nats.Header{}
	for k, v := range m.Headers() {
		h[k] = append([]string(nil), v...)
	}
	// The original's Nats-Msg-Id, if any, stays: a copy made twice (a
	// redelivery after a crash) is then stored once.
	h.Set(events.HeaderBridgeError, reason)
	h.Set(events.HeaderBridgeSubject, m.Subject())
	out := &nats.Msg{Subject: events.DeadLetterSubject(m.Subject()), Header: h, Data: m.Data()}
	if _, err := b.js.PublishMsg(ctx, out); err != nil {
		_ = m.NakWithDelay(retryBase)
		b.log.Warn("dead letter not stored; will retry", "subject", m.Subject(), "err", err)
		return
	}
	_ = m.TermWithReason("dead-lettered: " + reason)
	b.metrics.deadLetters.Inc()
	b.log.Warn("dead letter", "subject", m.Subject(), "to", out.Subject, "reason", reason, "bytes", len(m.Data()))
}
