package bridge_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Go's profiles are served only when asked for; /readyz carries the note it
// was given, ready or not.
func TestOpsPProfAndReadyNote(t *testing.T) {
	tests := []struct {
		name      string
		pprof     bool
		wantPProf int
	}{
		{"off by default", false, http.StatusNotFound},
		{"on", true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			addr := "127.0.0.1:" + freePort(t)
			r := w.startBridge(func(o *bridgeOpts) {
				o.cfg.HTTPAddr = addr
				o.cfg.PProf = tt.pprof
				o.cfg.ReadyNote = "NATS: the embedded NATS server"
			})
			w.eventually(10*time.Second, "ready", r.b.Ready)
			get := func(path string) (int, string) {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1"} {
				if code, body := get(path); code != tt.wantPProf {
					t.Errorf("GET %s = %d, want %d\n%s", path, code, tt.wantPProf, body)
				}
			}
			code, body := get("/readyz")
			if code != http.StatusOK || body != "ready\nNATS: the embedded NATS server\n" {
				t.Errorf("/readyz = %d %q", code, body)
			}
			r.stop(t)
		})
	}
}

// An unready bridge keeps answering 503 with the note.
func TestOpsReadyNoteWhenUnready(t *testing.T) {
	w := newWorld(t)
	addr := "127.0.0.1:" + freePort(t)
	r := w.startBridge(func(o *bridgeOpts) {
		o.cfg.HTTPAddr = addr
		o.cfg.ReadyNote = "NATS: the embedded NATS server"
	})
	w.eventually(10*time.Second, "ready", r.b.Ready)
	w.srv.Stop()
	w.eventually(10*time.Second, "unready", func() bool { return !r.b.Ready() })
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(string(b), "not ready:") || !strings.HasSuffix(string(b), "\nNATS: the embedded NATS server\n") {
		t.Errorf("/readyz = %d %q", resp.StatusCode, b)
	}
}
