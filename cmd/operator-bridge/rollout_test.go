package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

func TestDeployWaitConverged(t *testing.T) {
	gradual := operatortest.NewServer(operator.Kubernetes)
	t.Cleanup(gradual.Close)
	gradual.SetRollout(operatortest.Rollout{Step: 0.25, Every: 50 * time.Millisecond})
	sick := operatortest.NewServer(operator.Physical)
	t.Cleanup(sick.Close)
	sick.SetRollout(operatortest.Rollout{Unhealthy: map[string]int{"v2": 30}})
	stuck := operatortest.NewServer(operator.Kubernetes)
	t.Cleanup(stuck.Close)
	stuck.SetRollout(operatortest.Rollout{Stuck: true})
	envFile := writeFile(t, "environments.yaml", fmt.Sprintf(`
- {id: env-gradual, type: k8s, operator_url: %q}
- {id: env-sick, type: pm, operator_url: %q}
- {id: env-stuck, type: k8s, operator_url: %q}
`, gradual.URL, sick.URL, stuck.URL))
	s := startServe(t, map[string]string{"ENVIRONMENTS_FILE": envFile, "ROLLOUT_POLL": "50ms", "ROLLOUT_GRACE": "300ms"})
	nats := "--nats=" + s.natsURL

	t.Run("converged", func(t *testing.T) {
		r := runCmd(t, "deploy", nats, "--env", "env-gradual", "--app", "web", "--version", "v2", "--wait", "converged")
		wantCode(t, r, 0)
		wantContains(t, "deploy --wait converged", r.stdout, "succeeded", "Waiting for the rollout of web on env-gradual", "progressing", "v2 ", "of 100%", "converged after")
	})
	t.Run("json", func(t *testing.T) {
		r := runCmd(t, "deploy", nats, "--env", "env-gradual", "--app", "api", "--version", "v1", "--wait", "converged", "--json")
		wantCode(t, r, 0)
		var p events.DeployProgress
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Phase != events.PhaseConverged || !p.Final || p.App != "api" {
			t.Fatalf("--json: %v %+v\n%s", err, p, r.stdout)
		}
	})
	t.Run("degraded", func(t *testing.T) {
		r := runCmd(t, "deploy", nats, "--env", "env-sick", "--app", "web", "--version", "v2", "--wait", "converged")
		wantCode(t, r, 1)
		wantContains(t, "degraded rollout", r.stdout, "degraded", "health 30")
	})
	t.Run("timed out", func(t *testing.T) {
		r := runCmd(t, "deploy", nats, "--env", "env-stuck", "--app", "web", "--version", "v2", "--wait", "converged", "--rollout-timeout", "500ms")
		wantCode(t, r, 1)
		wantContains(t, "timed out rollout", r.stdout, "timed_out", "not converged within 500ms")
	})
	t.Run("could not tell", func(t *testing.T) {
		r := runCmd(t, "deploy", nats, "--env", "env-stuck", "--app", "db", "--version", "v2", "--wait", "converged", "--timeout", "2s")
		wantCode(t, r, 3)
		wantContains(t, "no final event", r.stderr, "no final rollout event")
	})
	t.Run("flags", func(t *testing.T) {
		wantCode(t, runCmd(t, "deploy", nats, "--env", "env-stuck", "--app", "x", "--version", "v1", "--wait", "forever"), 2)
		wantCode(t, runCmd(t, "deploy", nats, "--env", "env-stuck", "--app", "x", "--version", "v1", "--wait", "converged", "--no-rollout"), 2)
		wantCode(t, runCmd(t, "deploy", nats, "--env", "env-stuck", "--app", "x", "--version", "v1", "--min-healthy", "101"), 2)
	})
	t.Run("watch", func(t *testing.T) {
		r := runCmd(t, "watch", nats, "--from", "all", "--subjects", "deploy.progress.>", "--count", "2", "--for", "10s")
		wantCode(t, r, 0)
		wantContains(t, "watch progress", r.stdout, "rollout", "env-gradual", "web")
		if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 {
			t.Errorf("watch --count 2 printed %d lines:\n%s", len(lines), r.stdout)
		}
	})
}
