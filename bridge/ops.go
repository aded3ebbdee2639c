package bridge

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/boreas/operator-bridge/statuspage"
)

// opsHandler serves /healthz (200 while the process works), /readyz (200
// only while Ready), /metrics, when Config.PProf is on Go's profiles under
// /debug/pprof/ (see the README's performance section), and the status
// page at / when page is not nil. With an OpsToken, all but /healthz and
// /readyz need it.
func (b *Bridge) opsHandler(page http.Handler) http.Handler {
	mux := http.NewServeMux()
	if page != nil {
		mux.Handle("/", page)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		msg := "ready"
		if !b.Ready() {
			msg = "not ready: NATS disconnected, a consumer missing or environments not loaded"
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if b.cfg.ReadyNote != "" {
			msg += "\n" + b.cfg.ReadyNote
		}
		_, _ = w.Write([]byte(msg + "\n"))
	})
	if b.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(b.cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	if b.cfg.PProf {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	if b.cfg.OpsToken != "" {
		return statuspage.RequireToken(b.cfg.OpsToken, mux)
	}
	return mux
}
