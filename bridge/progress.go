package bridge

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// progress tells JetStream that the messages being handled are still in
// progress, so none is redelivered while a slow operator call or a queue for
// its key holds it. One ticker serves every in-flight message.
type progress struct {
	mu sync.Mutex
	m  map[jetstream.Msg]time.Time // message -> when it was last reported
}

func newProgress() *progress { return &progress{m: make(map[jetstream.Msg]time.Time)} }

func (p *progress) add(m jetstream.Msg) {
	p.mu.Lock()
	p.m[m] = time.Now()
	p.mu.Unlock()
}

func (p *progress) remove(m jetstream.Msg) {
	p.mu.Lock()
	delete(p.m, m)
	p.mu.Unlock()
}

// run reports every message older than every at each tick, until ctx ends.
// Messages still finishing after ctx ends are past their grace anyway.
func (p *progress) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var due []jetstream.Msg
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due = due[:0]
			p.mu.Lock()
			for m, last := range p.m {
				if now.Sub(last) >= every {
					due = append(due, m)
					p.m[m] = now
				}
			}
			p.mu.Unlock()
			for _, m := range due {
				_ = m.InProgress()
			}
		}
	}
}
