package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// progressAfter is how long deploy waits quietly: a deploy whose result
// comes sooner shows no progress at all.
const progressAfter = 2 * time.Second

// waitDeploy waits for the result of the stored request p. With a progress
// view it shows, once the result is slow to come, what can be known from
// outside the bridge: that the request is stored and is retried until the
// retry window ends, the environment's health events (the operator's last
// error, the circuit state), the time spent and the time left.
func (bc *bridgeClient) waitDeploy(ctx context.Context, env string, req events.DeployRequest, p published, view *progressView) (events.DeployResult, error) {
	type outcome struct {
		res events.DeployResult
		err error
	}
	done := make(chan outcome, 1) // Deploy's one answer
	go func() {
		// The same id again: JetStream keeps the stored copy, and Deploy
		// finds the result from that copy's place in the stream.
		res, err := bc.Deploy(ctx, env, req, events.WithID(p.ID))
		done <- outcome{res, err}
	}()
	if view == nil {
		o := <-done
		return o.res, o.err
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	health := make(chan events.Health, 1) // only the latest matters; the sender waits
	go func() {
		opts := events.WatchOptions{Subjects: []string{events.HealthSubject(env)}, LastPerSubject: true}
		for w, err := range bc.Watch(wctx, opts) {
			if err != nil {
				if w.Data == nil {
					return // no health to show; the deploy goes on
				}
				continue
			}
			if h, err := w.Health(); err == nil {
				select {
				case health <- h:
				case <-wctx.Done():
					return
				}
			}
		}
	}()

	quiet := time.NewTimer(progressAfter)
	defer quiet.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	shown := false
	var last *events.Health
	for {
		select {
		case o := <-done:
			view.end()
			return o.res, o.err
		case h := <-health:
			last = &h
			if shown {
				view.health(h)
			}
		case <-quiet.C:
			shown = true
			view.stored(p)
			if last != nil {
				view.health(*last)
			}
			view.waiting(time.Now())
		case now := <-tick.C:
			if shown {
				view.waiting(now)
			}
		}
	}
}

// progressView writes a slow deploy's progress to a terminal (stderr): a
// few lines that stay, and one status line drawn again every second.
type progressView struct {
	w           io.Writer
	p           palette
	redraw      bool // a terminal: the status line is drawn over itself
	retryWindow time.Duration
	env         string

	stored0   time.Time
	lastState string // the last health shown, to show only changes
	drawn     bool   // a status line is on screen
}

func (v *progressView) line(s string) {
	if v.drawn {
		fmt.Fprint(v.w, "\r\x1b[K")
		v.drawn = false
	}
	fmt.Fprintln(v.w, s)
}

func (v *progressView) stored(p published) {
	v.stored0 = p.Stored
	v.line(fmt.Sprintf("%s request %s is stored (%s #%d); no result yet, the bridge retries it until %s (retry window %s)",
		v.p.yellow("…"), p.ID, events.StreamDeploy, p.Sequence,
		p.Stored.Add(v.retryWindow).Local().Format("15:04:05"), v.retryWindow))
}

func (v *progressView) health(h events.Health) {
	var b strings.Builder
	fmt.Fprintf(&b, "  operator %s %s ", h.Operator, h.Endpoint)
	if h.Healthy {
		fmt.Fprintf(&b, "%s (%dms)", v.p.green("healthy"), h.LatencyMS)
	} else {
		b.WriteString(v.p.red("unhealthy"))
		if h.ConsecutiveFailures > 1 {
			fmt.Fprintf(&b, " (%d checks in a row)", h.ConsecutiveFailures)
		}
		if h.Error != "" {
			b.WriteString(": " + h.Error)
		}
	}
	if h.Circuit != "" && h.Circuit != "closed" {
		b.WriteString("; circuit " + v.p.yellow(h.Circuit) + " (requests wait instead of calling it)")
	}
	state := fmt.Sprint(h.Healthy, h.Error, h.Circuit) // not each check: their changes
	if state == v.lastState {
		return
	}
	v.lastState = state
	v.line(b.String() + v.p.dim(" · checked "+h.CheckedAt.Local().Format("15:04:05")))
}

func (v *progressView) waiting(now time.Time) {
	spent := now.Sub(v.stored0).Truncate(time.Second)
	left := (v.retryWindow - now.Sub(v.stored0)).Truncate(time.Second)
	s := fmt.Sprintf("  waiting %s, %s of the retry window left · Ctrl-C stops waiting; the request stays queued", spent, max(left, 0))
	if !v.redraw {
		return // not a terminal: the lines above say it
	}
	fmt.Fprint(v.w, "\r\x1b[K"+v.p.dim(s))
	v.drawn = true
}

func (v *progressView) end() {
	if v.drawn {
		fmt.Fprint(v.w, "\r\x1b[K")
		v.drawn = false
	}
}
