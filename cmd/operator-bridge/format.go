package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/events"
)

// eventLine renders one event from a bridge subject as one readable line.
func eventLine(p palette, subject string, h nats.Header, body []byte) string {
	switch {
	case strings.HasPrefix(subject, events.PrefixDeployResult):
		ev, r, err := events.DecodeDeployResult(h, body)
		if err != nil {
			return badLine(p, subject, err)
		}
		return fmt.Sprintf("%s %s %-16s %s %s", stamp(p, ev.Time()), p.cyan(pad("deploy", 7)), r.Environment,
			r.App+" "+r.Version, deploySummary(p, r))
	case strings.HasPrefix(subject, events.PrefixDeployProgress):
		ev, r, err := events.DecodeDeployProgress(h, body)
		if err != nil {
			return badLine(p, subject, err)
		}
		return fmt.Sprintf("%s %s %-16s %s %s", stamp(p, ev.Time()), p.cyan(pad("rollout", 7)), r.Environment, r.App, progressSummary(p, r))
	case strings.HasPrefix(subject, events.PrefixStatusResult):
		ev, r, err := events.DecodeStatusResult(h, body)
		if err != nil {
			return badLine(p, subject, err)
		}
		return fmt.Sprintf("%s %s %-16s %s %s", stamp(p, ev.Time()), p.cyan(pad("status", 7)), r.Environment, r.App, statusSummary(p, r))
	case strings.HasPrefix(subject, events.PrefixHealth):
		ev, hl, err := events.DecodeHealth(h, body)
		if err != nil {
			return badLine(p, subject, err)
		}
		state := p.green("healthy")
		if !hl.Healthy {
			state = p.red("UNHEALTHY")
		}
		line := fmt.Sprintf("%s %s %-16s %s %s %s", stamp(p, ev.Time()), p.cyan(pad("health", 7)), hl.Environment,
			state, hl.Operator, p.dim(fmt.Sprintf("%s %dms", hl.Endpoint, hl.LatencyMS)))
		if hl.Changed {
			line += " " + p.yellow("(changed)")
		}
		if hl.Circuit != "" && hl.Circuit != "closed" {
			line += " circuit " + p.yellow(hl.Circuit)
		}
		if hl.Error != "" {
			line += " " + p.red(hl.Error)
		}
		return line
	case strings.HasPrefix(subject, events.PrefixDeployRequest), strings.HasPrefix(subject, events.PrefixStatusQuery):
		ev, err := events.Decode(h, body)
		if err != nil {
			return badLine(p, subject, err)
		}
		kind := "request"
		if strings.HasPrefix(subject, events.PrefixStatusQuery) {
			kind = "query"
		}
		env, _ := events.EnvironmentFromSubject(subject)
		return fmt.Sprintf("%s %s %-16s %s %s", stamp(p, ev.Time()), p.cyan(pad(kind, 7)), env, compactJSON(ev.Data()), p.dim("id "+ev.ID()))
	case strings.HasPrefix(subject, events.PrefixDeadLetter):
		return fmt.Sprintf("%s %s %s %s %s", stamp(p, time.Now()), p.red(pad("dead", 7)), h.Get(events.HeaderBridgeSubject),
			p.red(h.Get(events.HeaderBridgeError)), p.dim(fmt.Sprintf("%.80q", body)))
	}
	return fmt.Sprintf("%s %s %.120q", stamp(p, time.Now()), subject, body)
}

func badLine(p palette, subject string, err error) string {
	return fmt.Sprintf("%s %s %s", stamp(p, time.Now()), subject, p.red("undecodable: "+err.Error()))
}

func stamp(p palette, t time.Time) string {
	if t.IsZero() {
		t = time.Now()
	}
	return p.dim(t.Local().Format("15:04:05.000"))
}

func pad(s string, n int) string { return fmt.Sprintf("%-*s", n, s) }

func compactJSON(b []byte) string {
	if len(b) > 160 {
		return string(b[:157]) + "..."
	}
	return string(b)
}

// outcomeText colours an outcome.
func outcomeText(p palette, o events.Outcome) string {
	switch o {
	case events.Succeeded:
		return p.green("✔ succeeded")
	case events.Superseded:
		return p.yellow("↷ superseded")
	case events.Rejected:
		return p.red("✘ rejected")
	default:
		return p.red("✘ " + string(o))
	}
}

func deploySummary(p palette, r events.DeployResult) string {
	var b strings.Builder
	b.WriteString(outcomeText(p, r.Outcome))
	if r.Operator != "" {
		b.WriteString(" " + r.Operator)
	}
	b.WriteString(p.dim(fmt.Sprintf(" attempts=%d %dms", r.Attempts, r.DurationMS)))
	if r.Error != nil {
		b.WriteString(" " + p.red(string(r.Error.Code)) + ": " + r.Error.Message)
	} else if r.Message != "" {
		b.WriteString(" " + p.dim(r.Message))
	}
	return b.String()
}

func statusSummary(p palette, r events.StatusResult) string {
	var b strings.Builder
	if r.Degraded {
		b.WriteString(p.red("degraded"))
	} else {
		b.WriteString(healthText(p, r.Status.Healthy.Level))
	}
	if r.Operator != "" {
		b.WriteString(" " + r.Operator)
	}
	var vs []string
	for _, v := range r.Status.Versions {
		vs = append(vs, fmt.Sprintf("%s %s (%d nodes)", v.Version, percentText(v.Percent), len(v.Nodes)))
	}
	if len(vs) > 0 {
		b.WriteString(" " + strings.Join(vs, ", "))
	}
	if r.Error != nil {
		b.WriteString(" " + p.red(string(r.Error.Code)) + ": " + r.Error.Message)
	}
	return b.String()
}

func healthText(p palette, level int) string {
	s := fmt.Sprintf("health %d", level)
	switch {
	case level >= 100:
		return p.green(s)
	case level > 0:
		return p.yellow(s)
	default:
		return p.red(s)
	}
}

func percentText(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f*100), "0"), ".") + "%"
}
