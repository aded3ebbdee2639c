package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
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

func TestFakeOperatorRollout(t *testing.T) {
	addr := testAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"fake-operator", "--kind", "pm", "--listen", addr, "--stuck", "--unhealthy", "v1=40"}, os.Getenv, io.Discard, &stderr)
	}()
	c, err := operator.NewClient(operator.Physical, "http://"+addr, operator.ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Apply(t.Context(), operator.ApplyRequest{App: "a", Version: "v1"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err := c.Status(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// Stuck where it started (no traffic yet), and unhealthy.
	if len(st.Versions) != 1 || st.Versions[0].Percent != 0 || st.Versions[0].Healthy.Level != 40 {
		t.Errorf("status %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("fake-operator: %v", err)
	}
	wantContains(t, "fake-operator log", stderr.String(), "stuck", "v1 health 40")
	for _, bad := range [][]string{{"--unhealthy", "v1=200"}, {"--unhealthy", "v1"}, {"--rollout-step", "2"}} {
		if r := runCmd(t, append([]string{"fake-operator", "--kind", "pm"}, bad...)...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, r.code)
		}
	}
}
