package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator/operatortest"
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
func followRollout(ctx context.Context, w io.Writer, p palette, bc *bridgeClient, env, app, id string, from events.ProgressOption, asJSON bool) error {
	if !asJSON {
		fmt.Fprintf(w, "Waiting for the rollout of %s on %s to converge %s\n", app, env, p.dim("(request "+id+")"))
	}
	for ev, err := range bc.Progress(ctx, env, id, from) {
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

// rolloutFlags registers fake-operator's rollout flags.
func rolloutFlags(fs *flag.FlagSet) (*operatortest.Rollout, *string) {
	ro := &operatortest.Rollout{}
	fs.Float64Var(&ro.Step, "rollout-step", 0, "move this `fraction` of traffic per --rollout-every (0: at once)")
	fs.DurationVar(&ro.Every, "rollout-every", time.Second, "interval of the rollout steps")
	fs.BoolVar(&ro.Stuck, "stuck", false, "never move traffic after an apply (the rollout gets stuck)")
	unhealthy := fs.String("unhealthy", "", "`V=LEVEL,...`: versions that report this health level (default 100)")
	return ro, unhealthy
}

// parseUnhealthy checks the rollout flags and reads --unhealthy
// ("v2=40,v3=0") into ro.
func parseUnhealthy(s string, ro *operatortest.Rollout) error {
	if ro.Step < 0 || ro.Step > 1 || ro.Every <= 0 {
		return fmt.Errorf("--rollout-step %v / --rollout-every %s: want a fraction 0-1 and a positive interval", ro.Step, ro.Every)
	}
	if s == "" {
		return nil
	}
	ro.Unhealthy = map[string]int{}
	for _, item := range strings.Split(s, ",") {
		v, l, ok := strings.Cut(strings.TrimSpace(item), "=")
		level, err := strconv.Atoi(l)
		if !ok || v == "" || err != nil || level < 0 || level > 100 {
			return fmt.Errorf("--unhealthy item %q: want VERSION=LEVEL with a level 0-100", item)
		}
		ro.Unhealthy[v] = level
	}
	return nil
}

func describeRollout(ro operatortest.Rollout) string {
	var parts []string
	switch {
	case ro.Stuck:
		parts = append(parts, "stuck")
	case ro.Step > 0:
		parts = append(parts, fmt.Sprintf("%s every %s", percentText(ro.Step), ro.Every))
	default:
		parts = append(parts, "at once")
	}
	for v, l := range ro.Unhealthy {
		parts = append(parts, fmt.Sprintf("%s health %d", v, l))
	}
	return strings.Join(parts, ", ")
}
