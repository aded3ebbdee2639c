package operatortest_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

func TestCloseEndsHangingRequests(t *testing.T) {
	srv := operatortest.NewServer(operator.Kubernetes)
	srv.SetFault(operatortest.Fault{Hang: true})
	c, err := operator.NewClient(operator.Kubernetes, srv.URL, operator.ClientOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Status(t.Context(), "a"); done <- err }()
	for len(srv.Requests()) == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a hanging request")
	}
	select {
	case err := <-done:
		var oe *operator.Error
		if !errors.As(err, &oe) || !oe.Retryable() {
			t.Errorf("hanging call ended with %v, want a retryable *operator.Error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client call did not end after Close")
	}
	srv.Close() // a second Close is harmless
}

func TestStateAndRecording(t *testing.T) {
	srv := operatortest.NewServer(operator.Physical)
	defer srv.Close()
	c := operator.NewPMClient(srv.URL)
	for _, v := range []string{"v1", "v2", "v3"} {
		if _, err := c.Apply(t.Context(), operator.ApplyRequest{App: "shop", Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"v1", "v2", "v3"}, srv.Applied("shop")); diff != "" {
		t.Errorf("Applied (-want +got):\n%s", diff)
	}
	st, ok := srv.Status("shop")
	if !ok || len(st.Versions) != 1 || st.Versions[0].Version != "v3" {
		t.Errorf("Status = %+v, %v; want v3 only", st, ok)
	}
	if _, ok := srv.Status("other"); ok {
		t.Error("Status of an app never applied reports ok")
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[2].Method != http.MethodPost || reqs[2].Path != "/api/deploy" ||
		!strings.Contains(string(reqs[2].Body), `"version":"v3"`) || reqs[2].Time.IsZero() {
		t.Errorf("requests = %+v", reqs)
	}
}

func TestInvalidApplyAnswers400(t *testing.T) {
	srv := operatortest.NewServer(operator.Kubernetes)
	defer srv.Close()
	for _, body := range []string{`not json`, `{"app":"a"}`, `{"app":"a","version":"v","deployments":[{"version":"v","percent":3}]}`} {
		resp, err := http.Post(srv.URL+"/api/apply", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", body, resp.StatusCode)
		}
	}
	if len(srv.Applied("a")) != 0 {
		t.Errorf("invalid applies were applied: %v", srv.Applied("a"))
	}
}

func TestSetFaultResetsFailCount(t *testing.T) {
	srv := operatortest.NewServer(operator.Kubernetes)
	defer srv.Close()
	c := operator.NewK8sClient(srv.URL)
	srv.SetFault(operatortest.Fault{FailTimes: 1, StatusCode: 429})
	_, err := c.Status(t.Context(), "a")
	var oe *operator.Error
	if !errors.As(err, &oe) || oe.StatusCode != 429 || oe.Reason != operator.Rejected {
		t.Errorf("first call: %v, want 429 Rejected", err)
	}
	if _, err := c.Status(t.Context(), "a"); err != nil {
		t.Errorf("second call: %v", err)
	}
	srv.SetFault(operatortest.Fault{FailTimes: 1})
	if _, err := c.Status(t.Context(), "a"); err == nil {
		t.Error("SetFault did not restart the count")
	}
}

func TestHandlerServedElsewhere(t *testing.T) {
	fake := operatortest.NewUnstartedServer(operator.Kubernetes)
	defer fake.Close()
	ts := httptest.NewServer(fake.Handler())
	defer ts.Close()
	c := operator.NewK8sClient(ts.URL)
	if _, err := c.Apply(t.Context(), operator.ApplyRequest{App: "a", Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"v1"}, fake.Applied("a")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestTLSServerClient(t *testing.T) {
	srv := operatortest.NewTLSServer(operator.Physical)
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "https://") || srv.Certificate() == nil || !strings.Contains(string(srv.CertificatePEM()), "BEGIN CERTIFICATE") {
		t.Fatalf("URL %q, certificate %v", srv.URL, srv.Certificate())
	}
	c, err := operator.NewClient(operator.Physical, srv.URL, operator.ClientOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.HealthCheck(t.Context()); err != nil {
		t.Error(err)
	}
}

func TestNewUnstartedServerPanicsOnMock(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a kind without routes")
		}
	}()
	operatortest.NewUnstartedServer(operator.Mock)
}

func TestLatency(t *testing.T) {
	srv := operatortest.NewServer(operator.Kubernetes)
	defer srv.Close()
	srv.SetFault(operatortest.Fault{Latency: 30 * time.Millisecond})
	start := time.Now()
	if err := operator.NewK8sClient(srv.URL).HealthCheck(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("answered after %v, before the 30ms latency", d)
	}
}
