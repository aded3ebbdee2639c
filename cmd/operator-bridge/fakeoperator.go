package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

const fakeOperatorUsage = `Usage: operator-bridge fake-operator --kind kubernetes|physical [--listen ADDR] [faults]

Runs a fake Kubernetes or physical-machine operator (the HTTP API of
docs/operators.md) that keeps the applied deployments in memory, logs each
request to stderr and misbehaves on request. With --fencing it supports
fencing: it answers 409 Conflict to an apply whose Boreas-Fence header is
lower than the highest it accepted for that app. It stops on SIGINT or SIGTERM.

An apply rolls out at once unless --rollout-step moves traffic by that
fraction every --rollout-every; --stuck never moves it; --unhealthy V=LEVEL
makes version V report that health level (for the bridge's rollout tracking).

With --per-path it is one operator per first path segment, each with its
own apps: http://ADDR/NAME/api/apply is operator NAME's. Point each
environment's operator_url at http://ADDR/<environment> to give every
environment an operator of its own (an operator's status of an app cannot
tell environments apart), as make bench does.

GET /stats answers the calls counted so far, as JSON ({"apply": N, "status": N, ...}).
`

func runFakeOperator(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("fake-operator")
	var (
		kindName  = fs.String("kind", "kubernetes", "operator `kind`: kubernetes (k8s) or physical (pm)")
		listen    = fs.String("listen", "127.0.0.1:8081", "`address` to listen on")
		f         operatortest.Fault
		logFormat = fs.String("log-format", "auto", "auto, text or json")
		fencing   = fs.Bool("fencing", false, "answer 409 to an apply whose Boreas-Fence is lower than the highest accepted for its app")
		perPath   = fs.Bool("per-path", false, "one operator per first path segment: http://ADDR/NAME/api/... is operator NAME's")
	)
	fs.DurationVar(&f.Latency, "latency", 0, "wait this long before every answer")
	fs.IntVar(&f.FailTimes, "fail-times", 0, "answer the next `N` apply/status calls with --status-code (default 503), then succeed")
	fs.IntVar(&f.StatusCode, "status-code", 0, "with --fail-times: its HTTP status; alone: every apply/status answers it")
	fs.BoolVar(&f.Always503, "always-503", false, "answer every apply/status call with 503")
	fs.BoolVar(&f.Reject, "reject", false, `answer every apply with {"success": false}`)
	fs.BoolVar(&f.Garbage, "garbage", false, "answer apply/status with 200 and a body that is not JSON")
	fs.BoolVar(&f.HealthDown, "health-down", false, "answer /health with 503")
	fs.BoolVar(&f.Hang, "hang", false, "never answer")
	fs.StringVar(&f.Token, "token", "", "require this bearer `token`, else 401")
	ro, unhealthy := rolloutFlags(fs)
	if err := parseFlags(c, fs, fakeOperatorUsage, args); err != nil {
		return err
	}
	if err := parseUnhealthy(*unhealthy, ro); err != nil {
		return usageError("fake-operator: %v", err)
	}
	kind, err := operator.ParseKind(*kindName)
	if err != nil || kind == operator.Mock {
		return usageError("fake-operator: --kind %q: want kubernetes (k8s) or physical (pm)", *kindName)
	}
	log := c.newLogger(c.stderr, slog.LevelInfo, *logFormat)

	ops := &fakeOperators{newServer: func() *operatortest.Server {
		srv := operatortest.NewUnstartedServer(kind)
		srv.SetFault(f)
		srv.SetFencing(*fencing)
		srv.SetRollout(*ro)
		return srv
	}}
	var handler http.Handler = ops.get("").Handler()
	if *perPath {
		handler = ops
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return withCode(exitFailed, fmt.Errorf("fake-operator --listen %s: %w", *listen,
			addrInUse(err, "choose another port with --listen, e.g. --listen 127.0.0.1:8083, or 127.0.0.1:0 for any free one")))
	}
	hs := &http.Server{Handler: splitPath(countCalls(logRequests(handler, log), kind), *perPath), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1) // Serve's one result
	go func() { served <- hs.Serve(ln) }()
	log.Info("fake operator listening", "kind", kind.String(), "url", "http://"+ln.Addr().String(), "faults", describeFault(f), "fencing", *fencing, "rollout", describeRollout(*ro))

	select {
	case <-ctx.Done():
	case err := <-served:
		return withCode(exitFailed, fmt.Errorf("fake-operator --listen %s: %w", *listen,
			addrInUse(err, "choose another port with --listen, e.g. --listen 127.0.0.1:8083, or 127.0.0.1:0 for any free one")))
	}
	ops.close() // ends hanging requests
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return withCode(exitFailed, fmt.Errorf("fake-operator: shutdown: %w", err))
	}
	log.Info("fake operator stopped")
	return nil
}

// fakeOperators are the fake operators of one fake-operator process: one,
// or one per path prefix, made as they are first called.
type fakeOperators struct {
	newServer func() *operatortest.Server
	mu        sync.Mutex
	byName    map[string]*operatortest.Server
}

type operatorName struct{}

func (o *fakeOperators) get(name string) *operatortest.Server {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byName == nil {
		o.byName = map[string]*operatortest.Server{}
	}
	srv, ok := o.byName[name]
	if !ok {
		srv = o.newServer()
		o.byName[name] = srv
	}
	return srv
}

// ServeHTTP serves the request with the operator splitPath named.
func (o *fakeOperators) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, _ := r.Context().Value(operatorName{}).(string)
	o.get(name).Handler().ServeHTTP(w, r)
}

func (o *fakeOperators) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, srv := range o.byName {
		srv.Close()
	}
}

// splitPath, when on, takes the first segment of a path of more than one
// (/NAME/api/apply) as the operator's name, and hands the rest on.
func splitPath(h http.Handler, on bool) http.Handler {
	if !on {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if ok && name != "" {
			r = r.WithContext(context.WithValue(r.Context(), operatorName{}, name))
			r.URL.Path, r.URL.RawPath = "/"+rest, ""
		}
		h.ServeHTTP(w, r)
	})
}

// describeFault names the faults in effect (never the token itself).
func describeFault(f operatortest.Fault) string {
	var parts []string
	add := func(on bool, s string) {
		if on {
			parts = append(parts, s)
		}
	}
	add(f.Latency > 0, "latency="+f.Latency.String())
	add(f.FailTimes > 0, fmt.Sprintf("fail-times=%d", f.FailTimes))
	add(f.StatusCode > 0, fmt.Sprintf("status-code=%d", f.StatusCode))
	add(f.Always503, "always-503")
	add(f.Reject, "reject")
	add(f.Garbage, "garbage")
	add(f.HealthDown, "health-down")
	add(f.Hang, "hang")
	add(f.Token != "", "token required")
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests logs one line per request.
func logRequests(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.code,
			"duration", time.Since(start).Round(time.Microsecond)}
		for _, h := range []string{operator.HeaderRequestID, operator.HeaderFence} {
			if v := r.Header.Get(h); v != "" {
				attrs = append(attrs, strings.ToLower(h), v)
			}
		}
		log.Info("request", attrs...)
	})
}

// countCalls counts the calls h gets by endpoint and serves the counts on
// GET /stats (for make bench: how many operator calls each side made).
func countCalls(h http.Handler, kind operator.Kind) http.Handler {
	routes, _ := operator.RoutesFor(kind)
	var apply, status, health, other atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/stats" && r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"apply":%d,"status":%d,"health":%d,"other":%d}`+"\n", apply.Load(), status.Load(), health.Load(), other.Load())
			return
		case p == routes.Apply:
			apply.Add(1)
		case strings.HasPrefix(p, routes.Status):
			status.Add(1)
		case p == routes.Health:
			health.Add(1)
		default:
			other.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}
