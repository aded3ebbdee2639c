// Package operatortest provides fake Kubernetes and physical-machine
// operators for tests, in the manner of net/http/httptest: real HTTP on
// 127.0.0.1, in-memory state like operator.MockClient, every request
// recorded, and scriptable faults (see Fault). With SetFencing(true) a fake
// operator supports fencing (the Boreas-Fence header, see
// operator.ApplyRequest): it answers 409 Conflict to an apply whose fence is
// lower than the highest it accepted for that app.
//
//	srv := operatortest.NewServer(operator.Kubernetes)
//	defer srv.Close()
//	c, _ := operator.NewClient(operator.Kubernetes, srv.URL, operator.ClientOptions{})
//	srv.SetFault(operatortest.Fault{FailTimes: 2}) // two 503s, then success
package operatortest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"github.com/boreas/operator-bridge/operator"
)

// Request is one request the server received.
type Request struct {
	Method  string
	Path    string // decoded path
	RawPath string // path as sent, escaped
	Header  http.Header
	Body    []byte
	Time    time.Time // when it arrived, before any Fault.Latency or Hang

	// Of an apply: its fencing headers (zero when absent or unreadable),
	// whether it was applied, and when the server decided (applied it,
	// refused it as stale, or answered a fault). Decided is zero when it was
	// never decided (a hang, a dropped connection, a closed server).
	RequestID   string
	RequestTime time.Time
	Fence       uint64
	Accepted    bool
	Decided     time.Time
	// StatusCode is the HTTP status answered, 0 when none was.
	StatusCode int
}

// Fault scripts how the server misbehaves. The zero Fault is a healthy
// operator. Latency, Hang, DropConn and Token apply to every endpoint; the
// status faults (FailTimes, Always503, StatusCode, Reject, Garbage, Body) to
// apply and status only; HealthDown to health only.
type Fault struct {
	Latency    time.Duration // wait before answering
	FailTimes  int           // the next N apply/status calls answer StatusCode (default 503), then succeed
	Always503  bool          // apply and status answer 503
	Hang       bool          // never answer, until the client gives up or the server closes
	StatusCode int           // with FailTimes: its status; alone: every apply/status answers it
	Reject     bool          // apply answers 200 {"success":false,"message":...}
	Garbage    bool          // apply and status answer 200 with a body that is not JSON
	Body       []byte        // when set, apply and status answer 200 with exactly this body
	HealthDown bool          // /health answers 503
	DropConn   bool          // close the connection without answering
	Token      string        // require "Authorization: Bearer <Token>", else 401
}

// RejectMessage is the message of an apply rejected by Fault.Reject.
const RejectMessage = "rejected by the fake operator"

// GarbageBody is the body sent for Fault.Garbage.
const GarbageBody = "<html><body>502 Bad Gateway... just kidding, 200</body></html>"

// maxRequestBody bounds a recorded request body.
const maxRequestBody = 10 << 20

// MaxRecorded is how many requests a Server remembers; older ones are
// forgotten, so a long-running fake operator does not grow without bound.
const MaxRecorded = 10000

// Server is a fake operator listening on 127.0.0.1.
type Server struct {
	URL  string // base URL, e.g. http://127.0.0.1:50123, once started
	Kind operator.Kind

	ts      *httptest.Server
	handler http.Handler
	routes  operator.Routes
	closing chan struct{}
	once    sync.Once

	mu          sync.Mutex
	fault       Fault
	failed      int
	requests    []*Request
	maxRecorded int
	state       map[string]operator.Status
	applied     map[string][]string
	fencing     bool
	fences      map[string]uint64 // app → highest fence accepted
}

// NewServer starts and returns a fake operator of kind (operator.Kubernetes
// or operator.Physical). The caller should Close it.
func NewServer(kind operator.Kind) *Server {
	s := NewUnstartedServer(kind)
	s.Start()
	return s
}

// NewTLSServer starts and returns a fake operator using HTTPS with a
// self-signed certificate (see Certificate and CertificatePEM).
func NewTLSServer(kind operator.Kind) *Server {
	s := NewUnstartedServer(kind)
	s.StartTLS()
	return s
}

// NewUnstartedServer returns a fake operator that is not yet serving; call
// Start or StartTLS, or serve Handler yourself. It panics if kind is not an
// HTTP operator kind.
func NewUnstartedServer(kind operator.Kind) *Server {
	routes, ok := operator.RoutesFor(kind)
	if !ok {
		panic(fmt.Sprintf("operatortest: %q is not an HTTP operator kind", kind))
	}
	s := &Server{
		Kind:        kind,
		routes:      routes,
		closing:     make(chan struct{}),
		maxRecorded: MaxRecorded,
		state:       make(map[string]operator.Status),
		applied:     make(map[string][]string),
		fences:      make(map[string]uint64),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+routes.Apply, s.apply)
	mux.HandleFunc("GET "+routes.Status+"{app}", s.status)
	mux.HandleFunc("GET "+routes.Health, s.health)
	s.handler = s.wrap(mux)
	s.ts = httptest.NewUnstartedServer(s.handler)
	return s
}

// Start starts serving plain HTTP.
func (s *Server) Start() {
	s.ts.Start()
	s.URL = s.ts.URL
}

// StartTLS starts serving HTTPS.
func (s *Server) StartTLS() {
	s.ts.StartTLS()
	s.URL = s.ts.URL
}

// Certificate returns the HTTPS certificate, or nil for plain HTTP.
func (s *Server) Certificate() *x509.Certificate { return s.ts.Certificate() }

// CertificatePEM returns the HTTPS certificate PEM-encoded, as a CA file
// for OPERATOR_TLS_CA; nil for plain HTTP.
func (s *Server) CertificatePEM() []byte {
	c := s.ts.Certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// Client returns an HTTP client that trusts the server.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Handler returns the fake operator's handler, to serve it yourself.
func (s *Server) Handler() http.Handler { return s.handler }

// Close ends hanging requests, shuts the server down and waits for its
// requests to finish.
func (s *Server) Close() {
	s.once.Do(func() { close(s.closing) })
	s.ts.Close()
}

// SetFault replaces the current fault; the zero Fault means none.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	s.failed = 0
}

// SetFencing turns fencing on or off. While it is on, an apply whose
// Boreas-Fence is lower than the highest the server accepted for its app is
// answered 409 Conflict with {"success":false,"message":"stale fence N < M"}
// and not applied, and an unreadable Boreas-Fence is answered 400. An apply
// without the header is never refused as stale. The highest fences are kept
// while fencing is off.
func (s *Server) SetFencing(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fencing = on
}

// SetMaxRecorded changes how many requests the server remembers (default
// MaxRecorded); n <= 0 restores the default.
func (s *Server) SetMaxRecorded(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		n = MaxRecorded
	}
	s.maxRecorded = n
	s.trim()
}

// trim forgets the oldest requests beyond maxRecorded. s.mu is held.
func (s *Server) trim() {
	if over := len(s.requests) - s.maxRecorded; over > 0 {
		clear(s.requests[:over])
		s.requests = slices.Delete(s.requests, 0, over)
	}
}

// Requests returns the requests received so far (the last MaxRecorded),
// oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		c := *r
		c.Header = r.Header.Clone()
		c.Body = slices.Clone(r.Body)
		out[i] = c
	}
	return out
}

// Applied returns the versions successfully applied to app, in order.
func (s *Server) Applied(app string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.applied[app])
}

// Status returns app's status after its last apply, and false if it was
// never applied.
func (s *Server) Status(app string) (operator.Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.state[app]
	if !ok {
		return operator.Status{}, false
	}
	return clone(st), true
}

func (s *Server) currentFault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

type recordKey struct{}

// record returns the record of the request r, set by wrap.
func record(r *http.Request) *Request { return r.Context().Value(recordKey{}).(*Request) }

// recorder notes the status of the answer in the request's record.
type recorder struct {
	http.ResponseWriter
	s   *Server
	rec *Request
}

func (w *recorder) WriteHeader(code int) {
	w.s.mu.Lock()
	if w.rec.StatusCode == 0 {
		w.rec.StatusCode = code
		if w.rec.Decided.IsZero() {
			w.rec.Decided = time.Now()
		}
	}
	w.s.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap records every request and applies the faults common to all endpoints.
func (s *Server) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &Request{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(),
			Header: r.Header.Clone(), Body: body, Time: time.Now(),
		}
		fencing, _ := operator.ParseFencing(r.Header)
		rec.RequestID, rec.RequestTime, rec.Fence = fencing.RequestID, fencing.RequestTime, fencing.Fence
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		s.trim()
		f := s.fault
		s.mu.Unlock()
		r = r.WithContext(context.WithValue(r.Context(), recordKey{}, rec))
		w = &recorder{ResponseWriter: w, s: s, rec: rec}

		if f.Token != "" && r.Header.Get("Authorization") != "Bearer "+f.Token {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "missing or wrong bearer token"})
			return
		}
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			case <-s.closing:
				panic(http.ErrAbortHandler) // drop the connection, answer nothing
			}
		}
		if f.Hang {
			select {
			case <-r.Context().Done():
				return
			case <-s.closing:
				panic(http.ErrAbortHandler)
			}
		}
		if f.DropConn {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
				return
			}
			panic(http.ErrAbortHandler) // HTTP/2: abort the stream
		}
		next.ServeHTTP(w, r)
	})
}

// failure answers the apply/status faults; it reports whether it answered.
func (s *Server) failure(w http.ResponseWriter) bool {
	s.mu.Lock()
	f := s.fault
	code := 0
	switch {
	case f.FailTimes > 0:
		if s.failed < f.FailTimes {
			s.failed++
			code = f.StatusCode
			if code == 0 {
				code = http.StatusServiceUnavailable
			}
		}
	case f.Always503:
		code = http.StatusServiceUnavailable
	case f.StatusCode != 0:
		code = f.StatusCode
	}
	s.mu.Unlock()
	switch {
	case code != 0:
		writeJSON(w, code, map[string]string{"error": fmt.Sprintf("injected fault: %d %s", code, http.StatusText(code))})
	case f.Body != nil:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(f.Body)
	case f.Garbage:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, GarbageBody)
	default:
		return false
	}
	return true
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	if s.failure(w) {
		return
	}
	if s.currentFault().Reject {
		writeJSON(w, http.StatusOK, operator.ApplyResponse{Success: false, Message: RejectMessage})
		return
	}
	var req operator.ApplyRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "invalid apply request: " + err.Error()})
		return
	}
	if req.App == "" || req.Version == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "app and version are required"})
		return
	}
	for _, d := range req.Deployments {
		if d.Version == "" || d.Percent < 0 || d.Percent > 1 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": fmt.Sprintf("invalid deployment %q at %v", d.Version, d.Percent)})
			return
		}
	}
	fencing, err := operator.ParseFencing(r.Header)
	rec := record(r)
	s.mu.Lock()
	if s.fencing {
		if err != nil {
			s.mu.Unlock()
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": "invalid fencing header: " + err.Error()})
			return
		}
		if high := s.fences[req.App]; fencing.Fence != 0 && fencing.Fence < high {
			s.mu.Unlock()
			writeJSON(w, http.StatusConflict, operator.ApplyResponse{Success: false, Message: fmt.Sprintf("stale fence %d < %d", fencing.Fence, high)})
			return
		}
	}
	s.fences[req.App] = max(s.fences[req.App], fencing.Fence)
	s.state[req.App] = operator.MockStatus(req)
	s.applied[req.App] = append(s.applied[req.App], req.Version)
	rec.Accepted, rec.Decided = true, time.Now()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, operator.ApplyResponse{Success: true, Message: fmt.Sprintf("applied %s to %s", req.Version, req.App)})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if s.failure(w) {
		return
	}
	app := r.PathValue("app")
	st, ok := s.Status(app)
	if !ok {
		st = operator.Status{App: app, Versions: []operator.VersionStatus{}}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if s.currentFault().HealthDown {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func clone(st operator.Status) operator.Status {
	c := st
	c.Versions = make([]operator.VersionStatus, len(st.Versions))
	for i, v := range st.Versions {
		c.Versions[i] = v
		c.Versions[i].Nodes = slices.Clone(v.Nodes)
	}
	return c
}
