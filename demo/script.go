package demo

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// Action is what a step sends.
type Action int

const (
	// Deploy publishes Step.Request as a deploy request on
	// deploy.request.<env> and waits for its result; with Want.Phase set,
	// then for its rollout's final phase.
	Deploy Action = iota
	// StatusQuery publishes a status query for Step.App on
	// status.query.<env> and waits for its status.result.<env>.
	StatusQuery
	// StatusRequest asks for Step.App's status over request/reply
	// (operator-bridge.status.<env>).
	StatusRequest
)

// Step is one step of a script: what it sends to which environment and
// the outcome it expects.
type Step struct {
	Title   string
	Action  Action
	Env     string               // the environment the step addresses
	Request events.DeployRequest // the request a Deploy step sends
	App     string               // the app a status step asks about
	Want    Want

	// at is the request's time given the script's start; nil is now.
	at func(start time.Time) time.Time
	// before sets the fakes up for the step and returns what to tell ("" for nothing).
	before func(w *World) string
	// during runs beside the wait for the result, telling what it does,
	// until it is done or stop is closed.
	during func(w *World, stop <-chan struct{}, tell func(string))
	// after undoes before.
	after func(w *World)
}

// Want is the outcome a step expects.
type Want struct {
	// Deploy: the result's outcome and error code ("" for none), and the
	// least number of operator calls (0 for any).
	Outcome     events.Outcome
	Code        events.ErrorCode
	MinAttempts int
	// Phase is the final phase the rollout must reach; "" does not follow
	// the rollout.
	Phase events.Phase

	// StatusQuery and StatusRequest: the versions the app must run, in any
	// order, with the status not degraded.
	Versions []string
}

// deploy judges a deploy result: whether it is the one wanted, and its
// description.
func (w Want) deploy(r events.DeployResult) (ok bool, text string) {
	var code events.ErrorCode
	if r.Error != nil {
		code = r.Error.Code
	}
	ok = r.Outcome == w.Outcome && code == w.Code && r.Attempts >= w.MinAttempts
	text = string(r.Outcome)
	if code != "" {
		text += " (" + string(code) + ")"
	}
	if w.MinAttempts > 1 {
		text += fmt.Sprintf(" after %d attempts", r.Attempts)
	}
	return ok, text
}

// rollout judges a rollout's final progress event.
func (w Want) rollout(p events.DeployProgress) (ok bool, text string) {
	elapsed := (time.Duration(p.ElapsedMS) * time.Millisecond).Round(100 * time.Millisecond)
	return p.Phase == w.Phase, fmt.Sprintf("rollout %s after %s: %s", p.Phase, elapsed, p.Message)
}

// status judges a status result; text is "<app> at <versions>".
func (w Want) status(r events.StatusResult) (ok bool, text string) {
	var got, shares []string
	for _, v := range r.Status.Versions {
		got = append(got, v.Version)
		shares = append(shares, v.Version+" "+percent(v.Percent))
	}
	want := slices.Clone(w.Versions)
	slices.Sort(got)
	slices.Sort(want)
	text = "no version"
	if len(shares) > 0 {
		text = strings.Join(shares, ", ")
	}
	return !r.Degraded && slices.Equal(got, want), r.App + " at " + text
}

// percent writes a fraction as a percentage: 0.2 is "20%", 0.125 "12.5%".
func percent(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f*100), "0"), ".") + "%"
}

// Script returns the demonstration's steps: deploys through every kind of
// operator, status over the stream and over request/reply, each kind of
// rejection, an operator that says no, an outage the bridge rides out, a
// late request that is superseded, and two rollouts, one converging and one
// degraded.
func (w *World) Script() []Step {
	first := func(start time.Time) time.Time { return start }
	return []Step{
		{
			Title: "Deploy my-app v1.0.0 to env-k8s-prod (fake Kubernetes operator)",
			Env:   EnvKubernetes, Request: events.DeployRequest{App: "my-app", Version: "v1.0.0"},
			Want: Want{Outcome: events.Succeeded}, at: first,
		},
		{
			Title: "Canary shop v2.1.0 at 20% on env-pm-lab (fake physical-machine operator)",
			Env:   EnvPhysical, Request: events.DeployRequest{App: "shop", Version: "v2.1.0", Deployments: []events.Deployment{
				{Version: "v2.1.0", Percent: 0.2, Package: json.RawMessage(`{"type":"tarball","url":"https://artifacts.local/shop-2.1.0.tgz"}`)},
				{Version: "v2.0.0", Percent: 0.8},
			}},
			Want: Want{Outcome: events.Succeeded},
		},
		{
			Title: "Deploy api v0.9.0 to env-mock (the in-process mock operator)",
			Env:   EnvMock, Request: events.DeployRequest{App: "api", Version: "v0.9.0"},
			Want: Want{Outcome: events.Succeeded},
		},
		{
			Title:  "Status of my-app on env-k8s-prod, asked on status.query.env-k8s-prod (result on status.result.env-k8s-prod)",
			Action: StatusQuery, Env: EnvKubernetes, App: "my-app",
			Want: Want{Versions: []string{"v1.0.0"}},
		},
		{
			Title:  "Status of shop on env-pm-lab, asked over request/reply (operator-bridge.status.env-pm-lab)",
			Action: StatusRequest, Env: EnvPhysical, App: "shop",
			Want: Want{Versions: []string{"v2.1.0", "v2.0.0"}},
		},
		{
			Title: "Deploy to an environment nobody registered: rejected, no operator called",
			Env:   "env-nowhere", Request: events.DeployRequest{App: "my-app", Version: "v1.0.0"},
			Want: Want{Outcome: events.Rejected, Code: events.CodeUnknownEnvironment},
		},
		{
			Title: "Deploy to the inactive environment env-retired: rejected",
			Env:   EnvRetired, Request: events.DeployRequest{App: "my-app", Version: "v1.0.0"},
			Want: Want{Outcome: events.Rejected, Code: events.CodeEnvironmentInactive},
		},
		{
			Title: "Invalid data (percents add up to 150%): rejected",
			Env:   EnvKubernetes, Request: events.DeployRequest{App: "my-app", Version: "v1.0.1", Deployments: []events.Deployment{
				{Version: "v1.0.1", Percent: 0.5}, {Version: "v1.0.0", Percent: 1},
			}},
			Want: Want{Outcome: events.Rejected, Code: events.CodeInvalidData},
		},
		{
			Title: "The physical-machine operator says no (success: false): failed, not retried",
			Env:   EnvPhysical, Request: events.DeployRequest{App: "shop", Version: "v2.2.0"},
			Want:   Want{Outcome: events.Failed, Code: events.CodeOperatorRejected},
			before: func(w *World) string { w.PM.SetFault(operatortest.Fault{Reject: true}); return "" },
			after:  func(w *World) { w.PM.SetFault(operatortest.Fault{}) },
		},
		{
			Title: "Kubernetes operator outage (503s for 3s): the bridge retries, then succeeds",
			Env:   EnvKubernetes, Request: events.DeployRequest{App: "my-app", Version: "v1.1.0"},
			Want: Want{Outcome: events.Succeeded, MinAttempts: 2},
			before: func(w *World) string {
				w.K8s.SetFault(operatortest.Fault{Always503: true, HealthDown: true})
				return "fake Kubernetes operator now answers 503"
			},
			during: func(w *World, stop <-chan struct{}, tell func(string)) {
				select {
				case <-time.After(3 * time.Second):
				case <-stop:
				}
				w.K8s.SetFault(operatortest.Fault{})
				tell("fake Kubernetes operator recovered")
			},
		},
		{
			Title: "A request older than what was applied arrives late: superseded, never rolled back",
			Env:   EnvKubernetes, Request: events.DeployRequest{App: "my-app", Version: "v0.9.0"},
			Want: Want{Outcome: events.Superseded, Code: events.CodeSuperseded},
			at:   func(start time.Time) time.Time { return start.Add(-time.Minute) },
		},
		{
			Title: "Roll out my-app v1.2.0 gradually (20% every 300ms): the bridge follows it until it converges",
			Env:   EnvKubernetes, Request: events.DeployRequest{App: "my-app", Version: "v1.2.0"},
			Want: Want{Outcome: events.Succeeded, Phase: events.PhaseConverged},
			before: func(w *World) string {
				w.K8s.SetRollout(operatortest.Rollout{Step: 0.2, Every: 300 * time.Millisecond})
				return ""
			},
		},
		{
			Title: fmt.Sprintf("Canary shop v2.2.0 at 50%% whose nodes stay at health 40: degraded once the %s grace is over", w.Config.RolloutGrace),
			Env:   EnvPhysical, Request: events.DeployRequest{App: "shop", Version: "v2.2.0", Deployments: []events.Deployment{
				{Version: "v2.2.0", Percent: 0.5}, {Version: "v2.1.0", Percent: 0.5},
			}},
			Want: Want{Outcome: events.Succeeded, Phase: events.PhaseDegraded},
			before: func(w *World) string {
				w.PM.SetRollout(operatortest.Rollout{Unhealthy: map[string]int{"v2.2.0": 40}})
				return ""
			},
		},
	}
}
