package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// Values of deploy --wait.
const (
	waitResult    = "result"
	waitConverged = "converged"
)

// followRollout shows the progress of request id in env as it comes, one
// line per event, like kubectl rollout status, and ends at the final
// event: nil when converged, exit code 1 for the other final phases, 3 when
// none came before ctx ended. With asJSON it prints only the final event.
func followRollout(ctx context.Context, w io.Writer, p palette, bc *bridgeClient, env, app, id string, since time.Time, asJSON bool) error {
	if !asJSON {
		fmt.Fprintf(w, "Waiting for the rollout of %s on %s to converge %s\n", app, env, p.dim("(request "+id+")"))
	}
	for ev, err := range bc.Progress(ctx, env, id, events.ProgressSince(since)) {
		if err != nil {
			if ctx.Err() != nil {
				return withCode(exitTimeout, fmt.Errorf("no final rollout event for request %s within the timeout (the bridge may still be following it): %w", id, err))
			}
			return withCode(exitTimeout, err)
		}
		if asJSON {
			if !ev.Final {
				continue
			}
			if err := writeJSON(w, ev); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(w, progressLine(p, ev))
		}
		if ev.Final {
			if !asJSON {
				fmt.Fprintf(w, "%s after %s: %s\n", phaseText(p, ev.Phase), elapsedText(ev.ElapsedMS), ev.Message)
			}
			if ev.Phase != events.PhaseConverged {
				return withCode(exitFailed, nil)
			}
			return nil
		}
	}
	return withCode(exitTimeout, fmt.Errorf("no final rollout event for request %s", id))
}

// progressLine renders one progress event: elapsed time, phase, and each
// version's share and health against its target.
func progressLine(p palette, ev events.DeployProgress) string {
	return fmt.Sprintf("%8s  %-11s  %s", elapsedText(ev.ElapsedMS), phaseText(p, ev.Phase), versionsText(p, ev))
}

func versionsText(p palette, ev events.DeployProgress) string {
	observed := map[string]events.VersionStatus{}
	for _, v := range ev.Observed.Versions {
		observed[v.Version] = v
	}
	var parts []string
	inTarget := map[string]bool{}
	for _, t := range ev.Target {
		inTarget[t.Version] = true
		v, ok := observed[t.Version]
		health := "-"
		if ok {
			health = healthText(p, v.Healthy.Level)
		}
		parts = append(parts, fmt.Sprintf("%s %s of %s %s", t.Version, percentText(v.Percent), percentText(t.Percent), health))
	}
	for _, v := range ev.Observed.Versions {
		if !inTarget[v.Version] && v.Percent > 0 {
			parts = append(parts, fmt.Sprintf("%s %s %s", v.Version, percentText(v.Percent), p.dim("leaving")))
		}
	}
	s := strings.Join(parts, ", ")
	if strings.Contains(ev.Message, "status call failed") {
		s += "  " + p.red(ev.Message)
	}
	return s
}

func phaseText(p palette, ph events.Phase) string {
	switch ph {
	case events.PhaseConverged:
		return p.green("✔ converged")
	case events.PhaseProgressing:
		return p.cyan("progressing")
	case events.PhaseSuperseded:
		return p.yellow("↷ superseded")
	default:
		return p.red("✘ " + string(ph))
	}
}

func elapsedText(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String()
}

// progressSummary is a progress event in watch's one-line form.
func progressSummary(p palette, ev events.DeployProgress) string {
	s := phaseText(p, ev.Phase) + " " + versionsText(p, ev) + p.dim(" "+elapsedText(ev.ElapsedMS))
	if ev.Final {
		s += " " + p.dim(ev.Message)
	}
	return s
}
