package bridge

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/boreas/operator-bridge/statuspage"
)

// opsHandler serves /healthz (200 while the process works), /readyz (200
// only while Ready), /metrics, Go's profiles under /debug/pprof/ (the
// address is loopback by default; see the README's performance section),
// and the status page at / when page is not nil. With an OpsToken, all but
// /healthz and /readyz need it.
func (b *Bridge) opsHandler(page http.Handler) http.Handler {
	mux := http.NewServeMux()
	if page != nil {
		mux.Handle("/", page)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !b.Ready() {
			http.Error(w, "not ready: NATS disconnected, a consumer missing or environments not loaded", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if b.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(b.cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if b.cfg.OpsToken != "" {
		return statuspage.RequireToken(b.cfg.OpsToken, mux)
	}
	return mux
}
