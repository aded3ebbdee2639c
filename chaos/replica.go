package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildBridge builds the operator-bridge binary of the module at root into
// dir and returns its path.
func BuildBridge(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "operator-bridge")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/operator-bridge")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/operator-bridge: %w\n%s", err, out)
	}
	return bin, nil
}

// Replica is one bridge process running `serve`, its log appended to a file
// across restarts.
type Replica struct {
	Name     string
	Bin      string
	Env      []string // OPERATOR_BRIDGE_* settings, added to a clean environment
	LogPath  string
	HTTPAddr string // its OPERATOR_BRIDGE_HTTP_ADDR, for /readyz

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	paused bool
}

// Start starts the process; it is an error when it runs.
func (r *Replica) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		select {
		case <-r.exited: // it died on its own
		default:
			return fmt.Errorf("replica %s already runs", r.Name)
		}
	}
	logf, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "===== %s start %s\n", r.Name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(r.Bin, "serve")
	cmd.Env = append(cleanEnv(), r.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "===== %s exited %s: %v\n", r.Name, time.Now().UTC().Format(time.RFC3339Nano), err)
		logf.Close()
		close(exited)
	}()
	r.cmd, r.exited, r.paused = cmd, exited, false
	return nil
}

// cleanEnv is the test's environment without any bridge settings.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OPERATOR_BRIDGE_") || strings.HasPrefix(kv, "MASTER_OPERATOR_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// signal sends sig to the running process.
func (r *Replica) signal(sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return fmt.Errorf("replica %s is not running", r.Name)
	}
	if sig == syscall.SIGSTOP {
		r.paused = true
	}
	if sig == syscall.SIGCONT {
		r.paused = false
	}
	return r.cmd.Process.Signal(sig)
}

// Pause stops the process with SIGSTOP.
func (r *Replica) Pause() error { return r.signal(syscall.SIGSTOP) }

// Resume continues it with SIGCONT.
func (r *Replica) Resume() error { return r.signal(syscall.SIGCONT) }

// Kill ends the process with SIGKILL and waits for it.
func (r *Replica) Kill() error {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("replica %s is not running", r.Name)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	r.mu.Lock()
	r.cmd = nil
	r.mu.Unlock()
	return nil
}

// Stop sends SIGTERM (after SIGCONT, should it be paused) and waits up to
// grace for the process to exit, then kills it. It returns how long it
// waited and whether the process exited within grace.
func (r *Replica) Stop(grace time.Duration) (time.Duration, bool) {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return 0, true
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	inGrace := true
	select {
	case <-exited:
	case <-time.After(grace):
		inGrace = false
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	r.mu.Lock()
	r.cmd = nil
	r.mu.Unlock()
	return time.Since(start), inGrace
}

// Running reports whether the process runs (paused or not).
func (r *Replica) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return false
	}
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the current process exits (nil when
// none runs).
func (r *Replica) Exited() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exited
}

// WaitReady waits until /readyz answers 200.
func (r *Replica) WaitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get("http://" + r.HTTPAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !r.Running() {
			return fmt.Errorf("replica %s exited before it was ready (see %s)", r.Name, r.LogPath)
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("replica %s not ready", r.Name), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
