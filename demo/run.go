package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// EventKind says what an Event tells.
type EventKind int

const (
	// StepStarted: step Step (from 1) titled Text begins.
	StepStarted EventKind = iota
	// Sent: the step sends Data on Subject.
	Sent
	// Told: the step changed the world (a fault set or cleared), Text says how.
	Told
	// StatusAnswered: the bridge answered a status request with Status.
	StatusAnswered
	// Judged: a wait of the step ended; OK says whether with the expected
	// outcome, Text what came.
	Judged
)

// Event is one thing Run tells its Observer.
type Event struct {
	Kind    EventKind
	Step    int
	Text    string
	Subject string
	Data    []byte
	Status  events.StatusResult
	OK      bool
}

// Observer is told what a script does as it happens, one Event at a time.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a func to an Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// Report says how each step of a script went.
type Report struct {
	Steps []StepReport
}

// StepReport is how one step went.
type StepReport struct {
	Title string
	// OK reports whether every wait of the step got its expected outcome.
	OK bool
	// Text is what the step's last wait got.
	Text string
}

// Failed returns the number of steps that did not get their expected
// outcome.
func (r Report) Failed() int {
	n := 0
	for _, s := range r.Steps {
		if !s.OK {
			n++
		}
	}
	return n
}

// Run plays steps against w in order, telling obs (nil for nobody) what
// happens, and returns how each went. A step that does not get its expected
// outcome is reported and the script goes on. The error is ctx's when it
// ended the script early; the report then holds the steps played.
func (w *World) Run(ctx context.Context, steps []Step, obs Observer) (Report, error) {
	if obs == nil {
		obs = ObserverFunc(func(Event) {})
	}
	start := time.Now()
	var rep Report
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		sr := w.step(ctx, i+1, s, start, obs)
		rep.Steps = append(rep.Steps, sr)
	}
	return rep, ctx.Err()
}

// play is one step being played.
type play struct {
	n   int
	obs Observer
	sr  StepReport
}

func (p *play) tell(kind EventKind, text string) {
	p.obs.Observe(Event{Kind: kind, Step: p.n, Text: text})
}

// judge reports how a wait of the step ended.
func (p *play) judge(ok bool, text string) bool {
	p.sr.OK, p.sr.Text = ok, text
	p.obs.Observe(Event{Kind: Judged, Step: p.n, OK: ok, Text: p.sr.Text})
	return ok
}

func (w *World) step(ctx context.Context, n int, s Step, start time.Time, obs Observer) StepReport {
	p := &play{n: n, obs: obs, sr: StepReport{Title: s.Title}}
	p.tell(StepStarted, s.Title)
	if s.before != nil {
		if note := s.before(w); note != "" {
			p.tell(Told, note)
		}
	}
	if s.after != nil {
		defer s.after(w)
	}
	switch s.Action {
	case Deploy:
		w.deploy(ctx, p, s, start)
	case StatusQuery:
		w.statusQuery(ctx, p, s)
	case StatusRequest:
		w.statusRequest(ctx, p, s)
	default:
		p.judge(false, fmt.Sprintf("unknown action %d", s.Action))
	}
	return p.sr
}

// deploy sends the step's request with events.Client.Deploy, judges its
// result and, when the step wants a phase, its rollout's final phase.
func (w *World) deploy(ctx context.Context, p *play, s Step, start time.Time) {
	since := time.Now().Add(-time.Minute) // allows for the stream's clock
	id := events.NewEventID()
	opts := []events.EventOption{events.WithID(id)}
	if s.at != nil {
		opts = append(opts, events.WithTime(s.at(start)))
	}
	data, err := json.Marshal(s.Request)
	if err != nil {
		p.judge(false, err.Error())
		return
	}
	p.obs.Observe(Event{Kind: Sent, Step: p.n, Subject: events.DeployRequestSubject(s.Env), Data: data})

	// during runs beside the wait; Run waits for it before it goes on, so
	// the Observer is never called twice at once.
	stop, done := make(chan struct{}), make(chan struct{})
	if s.during != nil {
		go func() {
			defer close(done)
			s.during(w, stop, func(note string) { p.tell(Told, note) })
		}()
	} else {
		close(done)
	}
	dctx, cancel := context.WithTimeout(ctx, w.Config.StepTimeout)
	r, err := w.Client.Deploy(dctx, s.Env, s.Request, opts...)
	cancel()
	close(stop)
	<-done
	if err != nil {
		p.judge(false, w.waitError(ctx, err))
		return
	}
	if !p.judge(s.Want.deploy(r)) || s.Want.Phase == "" {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, w.Config.StepTimeout)
	defer cancel()
	final, err := w.Client.WaitRollout(rctx, s.Env, id, events.ProgressSince(since))
	if err != nil {
		p.judge(false, "no final rollout event: "+err.Error())
		return
	}
	p.judge(s.Want.rollout(final))
}

// waitError describes why a wait of a step ended without a result.
func (w *World) waitError(ctx context.Context, err error) string {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Sprintf("no result within %s", w.Config.StepTimeout)
	}
	return err.Error()
}

// statusQuery publishes a status query on the STATUS stream and reads its
// result from the same stream, from the query's place on, with
// events.Client.Watch.
func (w *World) statusQuery(ctx context.Context, p *play, s Step) {
	msg, id, err := events.NewStatusQuery(w.source, s.Env, s.App)
	if err != nil {
		p.judge(false, err.Error())
		return
	}
	data, _ := json.Marshal(struct {
		App string `json:"app"`
	}{s.App})
	p.obs.Observe(Event{Kind: Sent, Step: p.n, Subject: msg.Subject, Data: data})
	ack, err := w.js.PublishMsg(ctx, msg)
	if err != nil {
		p.judge(false, "publish: "+err.Error())
		return
	}
	wctx, cancel := context.WithTimeout(ctx, w.Config.StepTimeout)
	defer cancel()
	opts := events.WatchOptions{Subjects: []string{events.StatusResultSubject(s.Env)}, Stream: events.StreamStatus, StartSeq: ack.Sequence}
	for m, err := range w.Client.Watch(wctx, opts) {
		if err != nil && m.Data == nil {
			p.judge(false, err.Error()) // the watch failed
			return
		}
		if err != nil {
			continue // not an event: not ours
		}
		if rid, _ := m.Event.Extensions()[events.ExtRequestID].(string); rid != id {
			continue
		}
		r, err := m.StatusResult()
		if err != nil {
			p.judge(false, err.Error())
			return
		}
		ok, text := s.Want.status(r)
		p.judge(ok, fmt.Sprintf("%s, health %d", text, r.Status.Healthy.Level))
		return
	}
	if ctx.Err() != nil {
		p.judge(false, ctx.Err().Error())
		return
	}
	p.judge(false, fmt.Sprintf("no result within %s", w.Config.StepTimeout))
}

// statusRequest asks over request/reply with events.Client.Status.
func (w *World) statusRequest(ctx context.Context, p *play, s Step) {
	rctx, cancel := context.WithTimeout(ctx, w.Config.StepTimeout)
	defer cancel()
	r, err := w.Client.Status(rctx, s.Env, s.App)
	if err != nil {
		p.judge(false, w.waitError(ctx, err))
		return
	}
	p.obs.Observe(Event{Kind: StatusAnswered, Step: p.n, Status: r})
	p.judge(s.Want.status(r))
}
