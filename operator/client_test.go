package operator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

var httpKinds = []operator.Kind{operator.Kubernetes, operator.Physical}

// newServer starts a fake operator of kind, closed with the test.
func newServer(t testing.TB, kind operator.Kind) *operatortest.Server {
	t.Helper()
	srv := operatortest.NewServer(kind)
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t testing.TB, kind operator.Kind, url string, opts operator.ClientOptions) *operator.Client {
	t.Helper()
	c, err := operator.NewClient(kind, url, opts)
	if err != nil {
		t.Fatalf("NewClient(%s, %s): %v", kind, url, err)
	}
	return c
}

// asError returns err as a *operator.Error, failing the test otherwise.
func asError(t *testing.T, err error) *operator.Error {
	t.Helper()
	var oe *operator.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not a *operator.Error", err, err)
	}
	return oe
}

var canaryReq = operator.ApplyRequest{
	App:     "my-app",
	Version: "v1.2.3",
	Deployments: []operator.Deployment{
		{Version: "v1.2.3", Percent: 0.2, Package: json.RawMessage(`{"image":"registry.local/my-app:v1.2.3"}`)},
		{Version: "v1.2.2", Percent: 0.8},
	},
}

func TestClientEndpoints(t *testing.T) {
	wantPaths := map[operator.Kind][3]string{
		operator.Kubernetes: {"POST /api/apply", "GET /api/status/my-app", "GET /health"},
		operator.Physical:   {"POST /api/deploy", "GET /api/app/my-app", "GET /health"},
	}
	for _, kind := range httpKinds {
		t.Run(string(kind), func(t *testing.T) {
			srv := newServer(t, kind)
			c := newClient(t, kind, srv.URL, operator.ClientOptions{})
			if c.Kind() != kind {
				t.Errorf("Kind() = %q, want %q", c.Kind(), kind)
			}
			if c.Endpoint() != srv.URL {
				t.Errorf("Endpoint() = %q, want %q", c.Endpoint(), srv.URL)
			}

			resp, err := c.Apply(t.Context(), canaryReq)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if want := (operator.ApplyResponse{Success: true, Message: "applied v1.2.3 to my-app"}); resp != want {
				t.Errorf("Apply = %+v, want %+v", resp, want)
			}
			st, err := c.Status(t.Context(), "my-app")
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if diff := cmp.Diff(operator.MockStatus(canaryReq), st); diff != "" {
				t.Errorf("Status (-want +got):\n%s", diff)
			}
			if err := c.HealthCheck(t.Context()); err != nil {
				t.Errorf("HealthCheck: %v", err)
			}

			reqs := srv.Requests()
			var got []string
			for _, r := range reqs {
				got = append(got, r.Method+" "+r.Path)
				if ua := r.Header.Get("User-Agent"); ua != "operator-bridge/"+operator.Version {
					t.Errorf("%s %s: User-Agent = %q", r.Method, r.Path, ua)
				}
			}
			want := wantPaths[kind]
			if diff := cmp.Diff(want[:], got); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			var sent operator.ApplyRequest
			if err := json.Unmarshal(reqs[0].Body, &sent); err != nil {
				t.Fatalf("apply body: %v", err)
			}
			if diff := cmp.Diff(canaryReq, sent); diff != "" {
				t.Errorf("apply body (-want +got):\n%s", diff)
			}
			if ct := reqs[0].Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("apply Content-Type = %q", ct)
			}
			if diff := cmp.Diff([]string{"v1.2.3"}, srv.Applied("my-app")); diff != "" {
				t.Errorf("Applied (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientStatusUnknownApp(t *testing.T) {
	srv := newServer(t, operator.Physical)
	c := newClient(t, operator.Physical, srv.URL, operator.ClientOptions{})
	st, err := c.Status(t.Context(), "never-applied")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(operator.Status{App: "never-applied", Versions: []operator.VersionStatus{}}, st); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// call runs op ("apply", "status" or "health") against c.
func call(ctx context.Context, c operator.Operator, op string) error {
	var err error
	switch op {
	case "apply":
		_, err = c.Apply(ctx, canaryReq)
	case "status":
		_, err = c.Status(ctx, "my-app")
	case "health":
		err = c.HealthCheck(ctx)
	}
	return err
}

func TestClientFaults(t *testing.T) {
	tests := []struct {
		name      string
		fault     operatortest.Fault
		op        string
		token     string
		reason    operator.Reason
		code      int
		retryable bool
		message   string // contained in Message
	}{
		{"503 on apply", operatortest.Fault{Always503: true}, "apply", "", operator.Unavailable, 503, true, "injected fault: 503"},
		{"503 on status", operatortest.Fault{Always503: true}, "status", "", operator.Unavailable, 503, true, "injected fault: 503"},
		{"500 on status", operatortest.Fault{StatusCode: 500}, "status", "", operator.Unavailable, 500, true, "injected fault: 500"},
		{"400 on apply", operatortest.Fault{StatusCode: 400}, "apply", "", operator.Rejected, 400, false, "injected fault: 400 Bad Request"},
		{"409 on apply", operatortest.Fault{StatusCode: 409}, "apply", "", operator.Stale, 409, false, "refused the apply as stale"},
		{"409 on status", operatortest.Fault{StatusCode: 409}, "status", "", operator.Rejected, 409, false, "injected fault: 409 Conflict"},
		{"404 on status", operatortest.Fault{StatusCode: 404}, "status", "", operator.Rejected, 404, false, "injected fault: 404"},
		{"success false", operatortest.Fault{Reject: true}, "apply", "", operator.Rejected, 200, false, operatortest.RejectMessage},
		{"garbage apply", operatortest.Fault{Garbage: true}, "apply", "", operator.InvalidResponse, 200, false, "not a JSON object"},
		{"garbage status", operatortest.Fault{Garbage: true}, "status", "", operator.InvalidResponse, 200, false, "not a JSON object"},
		{"apply without success", operatortest.Fault{Body: []byte(`{"message":"ok"}`)}, "apply", "", operator.InvalidResponse, 200, false, `no "success"`},
		{"apply success not bool", operatortest.Fault{Body: []byte(`{"success":"yes"}`)}, "apply", "", operator.InvalidResponse, 200, false, "not the documented JSON"},
		{"apply trailing data", operatortest.Fault{Body: []byte(`{"success":true} {}`)}, "apply", "", operator.InvalidResponse, 200, false, "after its JSON object"},
		{"empty status body", operatortest.Fault{Body: []byte{}}, "status", "", operator.InvalidResponse, 200, false, "empty answer"},
		{"status level out of range", operatortest.Fault{Body: []byte(`{"app":"my-app","healthy":{"level":500}}`)}, "status", "", operator.InvalidResponse, 200, false, "healthy.level 500"},
		{"status percent out of range", operatortest.Fault{Body: []byte(`{"app":"my-app","healthy":{"level":5},"versions":[{"version":"v1","percent":20}]}`)}, "status", "", operator.InvalidResponse, 200, false, "versions[0].percent"},
		{"status without app", operatortest.Fault{Body: []byte(`{"healthy":{"level":5}}`)}, "status", "", operator.InvalidResponse, 200, false, `no "app"`},
		{"health down", operatortest.Fault{HealthDown: true}, "health", "", operator.Unavailable, 503, true, "down"},
		{"dropped connection apply", operatortest.Fault{DropConn: true}, "apply", "", operator.Unavailable, 0, true, "EOF"},
		{"dropped connection health", operatortest.Fault{DropConn: true}, "health", "", operator.Unavailable, 0, true, "EOF"},
		{"hang", operatortest.Fault{Hang: true}, "status", "", operator.Timeout, 0, true, "no answer within 200ms"},
		{"hang health", operatortest.Fault{Hang: true}, "health", "", operator.Timeout, 0, true, "no answer within 200ms"},
		{"latency past timeout", operatortest.Fault{Latency: time.Second}, "apply", "", operator.Timeout, 0, true, "no answer within"},
		{"missing token", operatortest.Fault{Token: "s3cret"}, "apply", "", operator.Rejected, 401, false, "missing or wrong bearer token"},
		{"wrong token on health", operatortest.Fault{Token: "s3cret"}, "health", "other", operator.Rejected, 401, false, "bearer token"},
	}
	for _, kind := range httpKinds {
		for _, tt := range tests {
			t.Run(string(kind)+"/"+tt.name, func(t *testing.T) {
				srv := newServer(t, kind)
				srv.SetFault(tt.fault)
				c := newClient(t, kind, srv.URL, operator.ClientOptions{Timeout: 200 * time.Millisecond, Token: tt.token})
				err := call(t.Context(), c, tt.op)
				oe := asError(t, err)
				if oe.Reason != tt.reason || oe.StatusCode != tt.code || oe.Retryable() != tt.retryable {
					t.Errorf("got Reason %v, StatusCode %d, Retryable %v; want %v, %d, %v (error: %v)",
						oe.Reason, oe.StatusCode, oe.Retryable(), tt.reason, tt.code, tt.retryable, err)
				}
				if !strings.Contains(oe.Message, tt.message) {
					t.Errorf("Message %q does not contain %q", oe.Message, tt.message)
				}
				if oe.Op != tt.op || oe.Kind != kind || oe.Endpoint != srv.URL {
					t.Errorf("Op, Kind, Endpoint = %q, %q, %q; want %q, %q, %q", oe.Op, oe.Kind, oe.Endpoint, tt.op, kind, srv.URL)
				}
				if tt.op == "apply" && len(srv.Applied("my-app")) != 0 {
					t.Errorf("failed apply was applied: %v", srv.Applied("my-app"))
				}
			})
		}
	}
}

func TestClientRejectReturnsAnswer(t *testing.T) {
	srv := newServer(t, operator.Kubernetes)
	srv.SetFault(operatortest.Fault{Reject: true})
	c := newClient(t, operator.Kubernetes, srv.URL, operator.ClientOptions{})
	resp, err := c.Apply(t.Context(), canaryReq)
	if want := (operator.ApplyResponse{Success: false, Message: operatortest.RejectMessage}); resp != want {
		t.Errorf("Apply = %+v, want %+v", resp, want)
	}
	if asError(t, err).Reason != operator.Rejected {
		t.Errorf("err = %v, want Rejected", err)
	}
}

func TestClientFailTimesThenSuccess(t *testing.T) {
	srv := newServer(t, operator.Physical)
	srv.SetFault(operatortest.Fault{FailTimes: 2})
	c := newClient(t, operator.Physical, srv.URL, operator.ClientOptions{})
	var got []string
	for range 3 {
		_, err := c.Apply(t.Context(), canaryReq)
		if err != nil {
			oe := asError(t, err)
			got = append(got, oe.Reason.String())
			continue
		}
		got = append(got, "ok")
	}
	if diff := cmp.Diff([]string{"unavailable", "unavailable", "ok"}, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"v1.2.3"}, srv.Applied("my-app")); diff != "" {
		t.Errorf("Applied (-want +got):\n%s", diff)
	}
}

func TestClientRemoteMessage(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"message field", `{"message":"app frozen"}`, "app frozen"},
		{"error field", `{"error":"quota exceeded"}`, "quota exceeded"},
		{"nested error", `{"error":{"message":"nested reason"}}`, "nested reason"},
		{"plain text", "  upstream\n\tbroke  ", "upstream broke"},
		{"empty body", "", "Unprocessable Entity"},
		{"long body", strings.Repeat("x", 1000), strings.Repeat("x", 200) + "…"},
		{"invalid utf-8", "bad \xff byte", "bad \uFFFD byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusUnprocessableEntity)
				w.Write([]byte(tt.body))
			}))
			c := newClient(t, operator.Kubernetes, ts, operator.ClientOptions{})
			oe := asError(t, call(t.Context(), c, "apply"))
			if oe.Message != tt.want || oe.Reason != operator.Rejected || oe.StatusCode != 422 {
				t.Errorf("got %v %d %q, want Rejected 422 %q", oe.Reason, oe.StatusCode, oe.Message, tt.want)
			}
		})
	}
}

func TestClientPathEscaping(t *testing.T) {
	tests := []struct {
		app     string
		rawPath string
	}{
		{"my app/ü?#%", "/api/status/my%20app%2F%C3%BC%3F%23%25"},
		{"..", "/api/status/%2E%2E"},
		{"a.b_c-d", "/api/status/a.b_c-d"},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			srv := newServer(t, operator.Kubernetes)
			c := newClient(t, operator.Kubernetes, srv.URL, operator.ClientOptions{})
			req := operator.ApplyRequest{App: tt.app, Version: "v1"}
			if _, err := c.Apply(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(t.Context(), tt.app)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(operator.MockStatus(req), st); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			reqs := srv.Requests()
			if got := reqs[len(reqs)-1].RawPath; got != tt.rawPath {
				t.Errorf("path sent = %q, want %q", got, tt.rawPath)
			}
		})
	}
}

func TestClientEmptyApp(t *testing.T) {
	srv := newServer(t, operator.Kubernetes)
	c := newClient(t, operator.Kubernetes, srv.URL, operator.ClientOptions{})
	_, err := c.Status(t.Context(), "")
	if oe := asError(t, err); oe.Reason != operator.Rejected {
		t.Errorf("Reason = %v, want Rejected", oe.Reason)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent for an empty app", n)
	}
}

func TestClientToken(t *testing.T) {
	for _, kind := range httpKinds {
		t.Run(string(kind), func(t *testing.T) {
			srv := newServer(t, kind)
			srv.SetFault(operatortest.Fault{Token: "s3cret"})
			c := newClient(t, kind, srv.URL, operator.ClientOptions{Token: "s3cret"})
			for _, op := range []string{"apply", "status", "health"} {
				if err := call(t.Context(), c, op); err != nil {
					t.Errorf("%s: %v", op, err)
				}
			}
			reqs := srv.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3", len(reqs))
			}
			for _, r := range reqs {
				if got := r.Header.Get("Authorization"); got != "Bearer s3cret" {
					t.Errorf("%s %s: Authorization = %q", r.Method, r.Path, got)
				}
			}
		})
	}
}

func TestClientNoTokenHeaderWhenUnset(t *testing.T) {
	srv := newServer(t, operator.Kubernetes)
	c := newClient(t, operator.Kubernetes, srv.URL, operator.ClientOptions{})
	if err := c.HealthCheck(t.Context()); err != nil {
		t.Fatal(err)
	}
	if h := srv.Requests()[0].Header; h.Get("Authorization") != "" {
		t.Errorf("Authorization sent without a token: %q", h.Get("Authorization"))
	}
}

func TestClientBodyLimit(t *testing.T) {
	// answer is a valid apply answer of exactly n bytes.
	answer := func(n int) []byte {
		head, tail := `{"success":true,"message":"`, `"}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	tests := []struct {
		name  string
		limit int64
		size  int
		ok    bool
	}{
		{"at custom limit", 100, 100, true},
		{"over custom limit", 100, 101, false},
		{"at default limit", 0, operator.DefaultMaxBodyBytes, true},
		{"over default limit", 0, operator.DefaultMaxBodyBytes + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, operator.Kubernetes)
			srv.SetFault(operatortest.Fault{Body: answer(tt.size)})
			c := newClient(t, operator.Kubernetes, srv.URL, operator.ClientOptions{MaxBodyBytes: tt.limit})
			_, err := c.Apply(t.Context(), canaryReq)
			if tt.ok {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				return
			}
			oe := asError(t, err)
			if oe.Reason != operator.InvalidResponse || !strings.Contains(oe.Message, "exceeds") {
				t.Errorf("got %v %q, want InvalidResponse about the size", oe.Reason, oe.Message)
			}
		})
	}
}

func TestClientHealthIgnoresBodySize(t *testing.T) {
	url := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("ok ", 1000)))
	}))
	c := newClient(t, operator.Kubernetes, url, operator.ClientOptions{MaxBodyBytes: 10})
	if err := c.HealthCheck(t.Context()); err != nil {
		t.Errorf("HealthCheck with a large 2xx body: %v", err)
	}
}

func TestClientCallerContext(t *testing.T) {
	t.Run("cancelled mid-call", func(t *testing.T) {
		srv := newServer(t, operator.Kubernetes)
		srv.SetFault(operatortest.Fault{Hang: true})
		c := newClient(t, operator.Kubernetes, srv.URL, operator.ClientOptions{Timeout: time.Minute})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Status(ctx, "my-app")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want it to wrap context.Canceled", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("returned after %v, long after the cancel", d)
		}
		if len(srv.Requests()) != 1 {
			t.Errorf("the request did not reach the server before the cancel")
		}
	})
	t.Run("caller deadline", func(t *testing.T) {
		srv := newServer(t, operator.Physical)
		srv.SetFault(operatortest.Fault{Hang: true})
		c := newClient(t, operator.Physical, srv.URL, operator.ClientOptions{Timeout: time.Minute})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Apply(ctx, canaryReq)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
		}
		if oe := asError(t, err); oe.Reason != operator.Timeout {
			t.Errorf("Reason = %v, want Timeout", oe.Reason)
		}
	})
	t.Run("client timeout is not the caller's", func(t *testing.T) {
		srv := newServer(t, operator.Physical)
		srv.SetFault(operatortest.Fault{Hang: true})
		c := newClient(t, operator.Physical, srv.URL, operator.ClientOptions{Timeout: 100 * time.Millisecond})
		err := c.HealthCheck(t.Context())
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v wraps a context error although the caller's context is live", err)
		}
		if oe := asError(t, err); oe.Reason != operator.Timeout {
			t.Errorf("Reason = %v, want Timeout", oe.Reason)
		}
	})
}

func TestClientConnectionRefused(t *testing.T) {
	srv := operatortest.NewServer(operator.Kubernetes)
	url := srv.URL
	srv.Close()
	c := newClient(t, operator.Kubernetes, url, operator.ClientOptions{})
	oe := asError(t, c.HealthCheck(t.Context()))
	if oe.Reason != operator.Unavailable || !oe.Retryable() || oe.StatusCode != 0 {
		t.Errorf("got %v retryable=%v status=%d, want retryable Unavailable without status", oe.Reason, oe.Retryable(), oe.StatusCode)
	}
}

func TestClientCredentialsNotInErrors(t *testing.T) {
	srv := newServer(t, operator.Kubernetes)
	srv.SetFault(operatortest.Fault{Always503: true})
	withCreds := strings.Replace(srv.URL, "http://", "http://alice:hunter2@", 1)
	c := newClient(t, operator.Kubernetes, withCreds, operator.ClientOptions{})
	if c.Endpoint() != srv.URL {
		t.Errorf("Endpoint() = %q, want %q", c.Endpoint(), srv.URL)
	}
	closed := operatortest.NewServer(operator.Kubernetes)
	closed.Close()
	refused := newClient(t, operator.Kubernetes, strings.Replace(closed.URL, "http://", "http://alice:hunter2@", 1), operator.ClientOptions{})
	for name, err := range map[string]error{
		"503":     call(t.Context(), c, "apply"),
		"refused": call(t.Context(), refused, "status"),
	} {
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if s := err.Error(); strings.Contains(s, "hunter2") || strings.Contains(s, "alice") {
			t.Errorf("%s: error %q carries credentials", name, s)
		}
		if ep := asError(t, err).Endpoint; strings.Contains(ep, "alice") {
			t.Errorf("%s: Endpoint %q carries credentials", name, ep)
		}
	}
}

func TestNewClientErrors(t *testing.T) {
	tests := []struct {
		name string
		kind operator.Kind
		url  string
		want string
	}{
		{"mock kind", operator.Mock, "http://x", `"mock" has no HTTP client`},
		{"ftp", operator.Kubernetes, "ftp://host", "scheme must be http or https"},
		{"no scheme", operator.Kubernetes, "host:8080", "scheme must be http or https"},
		{"no host", operator.Physical, "http://", "no host"},
		{"query", operator.Physical, "http://host/?a=b", "query"},
		{"unparsable with credentials", operator.Physical, "http://bob:pw@host:port", "invalid operator URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := operator.NewClient(tt.kind, tt.url, operator.ClientOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q carries the password", err)
			}
		})
	}
}

func TestSeedConstructors(t *testing.T) {
	k8s := newServer(t, operator.Kubernetes)
	pm := newServer(t, operator.Physical)
	for _, c := range []*operator.Client{operator.NewK8sClient(k8s.URL), operator.NewPMClient(pm.URL)} {
		if _, err := c.Apply(t.Context(), canaryReq); err != nil {
			t.Errorf("%s Apply: %v", c.Kind(), err)
		}
	}
	if len(k8s.Applied("my-app")) != 1 || len(pm.Applied("my-app")) != 1 {
		t.Errorf("applied: k8s %v, pm %v", k8s.Applied("my-app"), pm.Applied("my-app"))
	}
	bad := operator.NewK8sClient("ftp://nowhere")
	oe := asError(t, bad.HealthCheck(t.Context()))
	if oe.Reason != operator.Rejected || oe.Retryable() {
		t.Errorf("invalid client: %v, want a non-retryable Rejected", oe)
	}
}

func TestClientTLSWithCAFile(t *testing.T) {
	srv := operatortest.NewTLSServer(operator.Kubernetes)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, srv.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	env := operator.Environment{ID: "env-tls", Type: operator.Kubernetes, OperatorURL: srv.URL}

	t.Run("trusted through OPERATOR_TLS_CA", func(t *testing.T) {
		t.Setenv("OPERATOR_BRIDGE_OPERATOR_TLS_CA", ca)
		s, err := operator.LoadSettings()
		if err != nil {
			t.Fatal(err)
		}
		f, err := operator.NewFactory(s)
		if err != nil {
			t.Fatal(err)
		}
		op, err := f.New(env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := op.Apply(t.Context(), canaryReq); err != nil {
			t.Fatalf("Apply over TLS: %v", err)
		}
		if err := op.HealthCheck(t.Context()); err != nil {
			t.Errorf("HealthCheck over TLS: %v", err)
		}
	})
	t.Run("untrusted without it", func(t *testing.T) {
		f, err := operator.NewFactory(operator.DefaultSettings())
		if err != nil {
			t.Fatal(err)
		}
		op, err := f.New(env)
		if err != nil {
			t.Fatal(err)
		}
		oe := asError(t, op.HealthCheck(t.Context()))
		if oe.Reason != operator.Unavailable || !strings.Contains(oe.Message, "certificate") {
			t.Errorf("got %v %q, want Unavailable about the certificate", oe.Reason, oe.Message)
		}
	})
	t.Run("bad CA file", func(t *testing.T) {
		notPEM := filepath.Join(t.TempDir(), "bad.pem")
		os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
		for _, path := range []string{notPEM, filepath.Join(t.TempDir(), "missing.pem")} {
			s := operator.DefaultSettings()
			s.TLSCA = path
			if _, err := operator.NewFactory(s); err == nil || !strings.Contains(err.Error(), "operator TLS CA") {
				t.Errorf("NewFactory with CA %s: err = %v", path, err)
			}
		}
	})
}

func TestClientObserver(t *testing.T) {
	srv := newServer(t, operator.Kubernetes)
	var calls []operator.Call
	c := newClient(t, operator.Kubernetes, srv.URL, operator.ClientOptions{Observer: func(c operator.Call) { calls = append(calls, c) }})
	call(t.Context(), c, "apply")
	srv.SetFault(operatortest.Fault{Always503: true})
	call(t.Context(), c, "status")
	want := []operator.Call{
		{Op: "apply", Kind: operator.Kubernetes, Endpoint: srv.URL, StatusCode: 200},
		{Op: "status", Kind: operator.Kubernetes, Endpoint: srv.URL, StatusCode: 503},
	}
	opts := cmp.Options{
		cmpopts.IgnoreFields(operator.Call{}, "Duration", "Err"),
	}
	if diff := cmp.Diff(want, calls, opts); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if len(calls) == 2 && (calls[0].Err != nil || calls[1].Err == nil || calls[0].Duration <= 0) {
		t.Errorf("calls: %+v", calls)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  *operator.Error
		want string
	}{
		{"full", &operator.Error{Op: "apply", Kind: operator.Kubernetes, Endpoint: "http://k8s:8081", Reason: operator.Unavailable, StatusCode: 503, Message: "overloaded"},
			"apply on kubernetes operator http://k8s:8081: unavailable (HTTP 503): overloaded"},
		{"no status", &operator.Error{Op: "health", Kind: operator.Physical, Endpoint: "http://pm", Reason: operator.Timeout, Message: "no answer within 10s"},
			"health on physical operator http://pm: timeout: no answer within 10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		r         operator.Reason
		code      string
		retryable bool
	}{
		{operator.Rejected, "operator_rejected", false},
		{operator.InvalidResponse, "operator_invalid_response", false},
		{operator.Unavailable, "operator_unavailable", true},
		{operator.Timeout, "operator_timeout", true},
		{operator.Stale, "superseded", false},
		{operator.Reason(0), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.r.String(), func(t *testing.T) {
			if got := tt.r.Code(); got != tt.code {
				t.Errorf("Code() = %q, want %q", got, tt.code)
			}
			if got := tt.r.Retryable(); got != tt.retryable {
				t.Errorf("Retryable() = %v, want %v", got, tt.retryable)
			}
		})
	}
}

func TestClientFencingHeaders(t *testing.T) {
	at := time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		req  operator.ApplyRequest
		want map[string]string // header → value, "" for absent
	}{
		{"all set", operator.ApplyRequest{RequestID: "req-1", RequestTime: at, Fence: 42},
			map[string]string{"Boreas-Request-Id": "req-1", "Boreas-Request-Time": "2026-01-02T14:04:05.123456789Z", "Boreas-Fence": "42"}},
		{"whole second", operator.ApplyRequest{RequestID: "r", RequestTime: at.Truncate(time.Second), Fence: 1},
			map[string]string{"Boreas-Request-Id": "r", "Boreas-Request-Time": "2026-01-02T14:04:05Z", "Boreas-Fence": "1"}},
		{"largest fence", operator.ApplyRequest{Fence: 18446744073709551615},
			map[string]string{"Boreas-Request-Id": "", "Boreas-Request-Time": "", "Boreas-Fence": "18446744073709551615"}},
		{"none", operator.ApplyRequest{},
			map[string]string{"Boreas-Request-Id": "", "Boreas-Request-Time": "", "Boreas-Fence": ""}},
	}
	for _, kind := range httpKinds {
		for _, tt := range tests {
			t.Run(string(kind)+"/"+tt.name, func(t *testing.T) {
				srv := newServer(t, kind)
				c := newClient(t, kind, srv.URL, operator.ClientOptions{})
				req := canaryReq
				req.RequestID, req.RequestTime, req.Fence = tt.req.RequestID, tt.req.RequestTime, tt.req.Fence
				if _, err := c.Apply(t.Context(), req); err != nil {
					t.Fatalf("Apply: %v", err)
				}
				r := srv.Requests()[0]
				got := map[string]string{}
				for h := range tt.want {
					got[h] = r.Header.Get(h)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("headers (-want +got):\n%s", diff)
				}
				if strings.Contains(string(r.Body), "req-1") || strings.Contains(string(r.Body), "42") {
					t.Errorf("fencing leaked into the body: %s", r.Body)
				}
				if r.Fence != tt.req.Fence || r.RequestID != tt.req.RequestID || !r.RequestTime.Equal(tt.req.RequestTime) {
					t.Errorf("recorded fencing %d %q %v, want %d %q %v", r.Fence, r.RequestID, r.RequestTime, tt.req.Fence, tt.req.RequestID, tt.req.RequestTime)
				}
			})
		}
	}
}

func TestClientStale(t *testing.T) {
	const base = "the operator refused the apply as stale: it already accepted a newer one for this app"
	tests := []struct {
		name string
		body string
		want string
	}{
		{"fake operator's answer", `{"success":false,"message":"stale fence 3 < 5"}`, base + " (stale fence 3 < 5)"},
		{"error field", `{"error":"older than req-9"}`, base + " (older than req-9)"},
		{"plain text", "stale\n", base + " (stale)"},
		{"empty body", "", base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusConflict)
				w.Write([]byte(tt.body))
			}))
			c := newClient(t, operator.Physical, ts, operator.ClientOptions{})
			_, err := c.Apply(t.Context(), operator.ApplyRequest{App: "a", Version: "v1", Fence: 3})
			oe := asError(t, err)
			if oe.Reason != operator.Stale || oe.StatusCode != 409 || oe.Retryable() || oe.Message != tt.want {
				t.Errorf("got %v %d retryable=%v %q, want stale 409 not retryable %q", oe.Reason, oe.StatusCode, oe.Retryable(), oe.Message, tt.want)
			}
			if oe.Reason.Code() != "superseded" {
				t.Errorf("code %q, want superseded", oe.Reason.Code())
			}
		})
	}
}

func TestClientAgainstFencingServer(t *testing.T) {
	for _, kind := range httpKinds {
		t.Run(string(kind), func(t *testing.T) {
			srv := newServer(t, kind)
			srv.SetFencing(true)
			c := newClient(t, kind, srv.URL, operator.ClientOptions{})
			var got []string
			for _, f := range []uint64{5, 3, 5, 0, 6, 4} {
				_, err := c.Apply(t.Context(), operator.ApplyRequest{App: "a", Version: fmt.Sprintf("v%d", f), Fence: f})
				got = append(got, fmt.Sprintf("%d:%s", f, reasonOf(err)))
				if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("stale fence %d < ", f)) {
					t.Errorf("fence %d: %v does not quote the operator", f, err)
				}
			}
			want := []string{"5:ok", "3:stale", "5:ok", "0:ok", "6:ok", "4:stale"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"v5", "v5", "v0", "v6"}, srv.Applied("a")); diff != "" {
				t.Errorf("Applied (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFencing(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name    string
		headers map[string]string
		want    operator.Fencing
		err     string
	}{
		{"all", map[string]string{"Boreas-Request-Id": "r1", "Boreas-Fence": "7", "Boreas-Request-Time": "2026-01-02T03:04:05.000000006Z"},
			operator.Fencing{RequestID: "r1", RequestTime: at, Fence: 7}, ""},
		{"none", nil, operator.Fencing{}, ""},
		{"negative fence", map[string]string{"Boreas-Fence": "-1"}, operator.Fencing{}, `Boreas-Fence "-1" is not a decimal integer`},
		{"hex fence", map[string]string{"Boreas-Fence": "0x10"}, operator.Fencing{}, "Boreas-Fence"},
		{"bad time", map[string]string{"Boreas-Request-Time": "yesterday"}, operator.Fencing{}, `Boreas-Request-Time "yesterday" is not an RFC 3339 time`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			got, err := operator.ParseFencing(h)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
