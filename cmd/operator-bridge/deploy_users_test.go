package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestCommandsWithDeployUsers runs serve as the `bridge` user and the client
// commands as `master`, `viewer` and `admin` of deploy/nats/users.conf, on a
// nats-server configured by deploy/nats/nats-server.conf: the commands must
// work within those permissions.
func TestCommandsWithDeployUsers(t *testing.T) {
	conf, err := filepath.Abs("../../deploy/nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Skipf("no %s", conf)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("%s: %v", conf, err)
	}
	opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir = "127.0.0.1", -1, 0, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	url := ns.ClientURL()

	startServe(t, map[string]string{"NATS_URL": url, "NATS_USER": "bridge", "NATS_PASSWORD": "bridge-dev-password", "USE_MOCK": "true"})
	as := func(user string) []string {
		return []string{"--nats", url, "--user", user, "--password", user + "-dev-password"}
	}
	cmd := func(name, user string, args ...string) []string {
		return append(append([]string{name}, as(user)...), args...)
	}

	// The admin registers environments (the bucket is the operators' to edit).
	r := runCmd(t, cmd("bench", "admin", "--setup", "--requests", "20", "--envs", "2", "--apps", "2", "--progress", "off")...)
	wantCode(t, r, 0)

	r = runCmd(t, cmd("deploy", "master", "--env", "bench-000", "--app", "web", "--version", "v1", "--progress", "on")...)
	wantCode(t, r, 0)
	r = runCmd(t, cmd("status", "master", "--env", "bench-000", "--app", "web")...)
	wantCode(t, r, 0)
	wantContains(t, "status", r.stdout, "v1", "100%")
	r = runCmd(t, cmd("bench", "master", "--requests", "50", "--envs", "2", "--apps", "5", "--progress", "off")...)
	wantCode(t, r, 0)

	r = runCmd(t, cmd("envs", "viewer")...)
	wantCode(t, r, 0)
	wantContains(t, "envs", r.stdout, "bench-000", "bench-001")
	r = runCmd(t, cmd("watch", "viewer", "--from", "all", "--count", "2", "--for", "10s", "--subjects", "deploy.result.bench-000")...)
	wantCode(t, r, 0)
	if n := len(strings.Split(strings.TrimSpace(r.stdout), "\n")); n != 2 {
		t.Errorf("watch as viewer printed %d lines:\n%s", n, r)
	}
	// A viewer may not deploy.
	r = runCmd(t, cmd("deploy", "viewer", "--env", "bench-000", "--app", "web", "--version", "v2")...)
	wantCode(t, r, 1)
	wantContains(t, "deploy as viewer", r.stderr, "NATS refused", "Permissions Violation")
	// Nor register environments.
	r = runCmd(t, cmd("bench", "viewer", "--setup", "--requests", "1", "--progress", "off")...)
	wantCode(t, r, 1)
	wantContains(t, "bench --setup as viewer", r.stderr, "Permissions Violation")
}
