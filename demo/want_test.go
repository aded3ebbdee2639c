package demo

import (
	"testing"

	"github.com/boreas/operator-bridge/events"
)

// How a step judges what came against what it wants.
func TestWant(t *testing.T) {
	type verdict struct {
		ok   bool
		text string
	}
	status := func(degraded bool, versions ...events.VersionStatus) events.StatusResult {
		r := events.StatusResult{App: "shop", Degraded: degraded}
		r.Status.Versions = versions
		return r
	}
	canary := []events.VersionStatus{{Version: "v2.1.0", Percent: 0.2}, {Version: "v2.0.0", Percent: 0.8}}
	tests := []struct {
		name  string
		judge func() (bool, string)
		want  verdict
	}{
		{"deploy succeeded as wanted",
			func() (bool, string) {
				return Want{Outcome: events.Succeeded}.deploy(events.DeployResult{Outcome: events.Succeeded, Attempts: 1})
			},
			verdict{true, "succeeded"}},
		{"deploy rejected with the wanted code",
			func() (bool, string) {
				return Want{Outcome: events.Rejected, Code: events.CodeInvalidData}.deploy(events.DeployResult{
					Outcome: events.Rejected, Error: &events.ErrorInfo{Code: events.CodeInvalidData}})
			},
			verdict{true, "rejected (invalid_data)"}},
		{"deploy rejected with another code",
			func() (bool, string) {
				return Want{Outcome: events.Rejected, Code: events.CodeInvalidData}.deploy(events.DeployResult{
					Outcome: events.Rejected, Error: &events.ErrorInfo{Code: events.CodeUnknownEnvironment}})
			},
			verdict{false, "rejected (unknown_environment)"}},
		{"deploy failed where success was wanted",
			func() (bool, string) {
				return Want{Outcome: events.Succeeded}.deploy(events.DeployResult{
					Outcome: events.Failed, Error: &events.ErrorInfo{Code: events.CodeOperatorRejected}})
			},
			verdict{false, "failed (operator_rejected)"}},
		{"deploy succeeded at once where a retry was wanted",
			func() (bool, string) {
				return Want{Outcome: events.Succeeded, MinAttempts: 2}.deploy(events.DeployResult{Outcome: events.Succeeded, Attempts: 1})
			},
			verdict{false, "succeeded after 1 attempts"}},
		{"deploy succeeded after retries",
			func() (bool, string) {
				return Want{Outcome: events.Succeeded, MinAttempts: 2}.deploy(events.DeployResult{Outcome: events.Succeeded, Attempts: 3})
			},
			verdict{true, "succeeded after 3 attempts"}},
		{"rollout reached the wanted phase",
			func() (bool, string) {
				return Want{Phase: events.PhaseConverged}.rollout(events.DeployProgress{Phase: events.PhaseConverged, ElapsedMS: 1530, Message: "all healthy"})
			},
			verdict{true, "rollout converged after 1.5s: all healthy"}},
		{"rollout timed out where degraded was wanted",
			func() (bool, string) {
				return Want{Phase: events.PhaseDegraded}.rollout(events.DeployProgress{Phase: events.PhaseTimedOut, ElapsedMS: 60000, Message: "too slow"})
			},
			verdict{false, "rollout timed_out after 1m0s: too slow"}},
		{"status with the wanted versions in another order",
			func() (bool, string) {
				return Want{Versions: []string{"v2.0.0", "v2.1.0"}}.status(status(false, canary...))
			},
			verdict{true, "shop at v2.1.0 20%, v2.0.0 80%"}},
		{"status missing a version",
			func() (bool, string) { return Want{Versions: []string{"v2.1.0"}}.status(status(false, canary...)) },
			verdict{false, "shop at v2.1.0 20%, v2.0.0 80%"}},
		{"degraded status",
			func() (bool, string) {
				return Want{Versions: []string{"v2.1.0", "v2.0.0"}}.status(status(true, canary...))
			},
			verdict{false, "shop at v2.1.0 20%, v2.0.0 80%"}},
		{"status with nothing deployed",
			func() (bool, string) { return Want{Versions: []string{"v1"}}.status(status(false)) },
			verdict{false, "shop at no version"}},
		{"fractional percent",
			func() (bool, string) {
				return Want{Versions: []string{"v1"}}.status(status(false, events.VersionStatus{Version: "v1", Percent: 0.125}))
			},
			verdict{true, "shop at v1 12.5%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, text := tt.judge()
			if got := (verdict{ok, text}); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
