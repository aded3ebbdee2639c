package operatortest_test

import (
	"errors"
	"fmt"
	"io"
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

// postApply sends an apply of app at version with the fence header (when
// not empty) and returns the status and body of the answer.
func postApply(t *testing.T, url, app, version, fence string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/api/apply", strings.NewReader(`{"app":"`+app+`","version":"`+version+`","deployments":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if fence != "" {
		req.Header.Set("Boreas-Fence", fence)
	}
	req.Header.Set("Boreas-Request-Id", "id-"+version)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func TestFencing(t *testing.T) {
	type answer struct {
		Code int
		Body string
	}
	ok := func(app, v string) answer {
		return answer{200, `{"success":true,"message":"applied ` + v + ` to ` + app + `"}`}
	}
	tests := []struct {
		name    string
		fencing bool
		applies [][3]string // app, version, fence
		want    []answer
		applied []string // of app "a"
	}{
		{"on", true,
			[][3]string{{"a", "v5", "5"}, {"a", "v3", "3"}, {"b", "v1", "1"}, {"a", "v5b", "5"}, {"a", "v-", ""}, {"a", "v7", "7"}, {"a", "v6", "6"}},
			[]answer{ok("a", "v5"), {409, `{"success":false,"message":"stale fence 3 < 5"}`}, ok("b", "v1"), ok("a", "v5b"), ok("a", "v-"), ok("a", "v7"), {409, `{"success":false,"message":"stale fence 6 < 7"}`}},
			[]string{"v5", "v5b", "v-", "v7"}},
		{"off", false,
			[][3]string{{"a", "v5", "5"}, {"a", "v3", "3"}},
			[]answer{ok("a", "v5"), ok("a", "v3")},
			[]string{"v5", "v3"}},
		{"unreadable fence", true,
			[][3]string{{"a", "v1", "x1"}},
			[]answer{{400, `{"message":"invalid fencing header: Boreas-Fence \"x1\" is not a decimal integer"}`}},
			nil},
		{"unreadable fence without fencing", false,
			[][3]string{{"a", "v1", "x1"}},
			[]answer{ok("a", "v1")},
			[]string{"v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := operatortest.NewServer(operator.Kubernetes)
			defer srv.Close()
			srv.SetFencing(tt.fencing)
			var got []answer
			for _, a := range tt.applies {
				code, body := postApply(t, srv.URL, a[0], a[1], a[2])
				got = append(got, answer{code, body})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.applied, srv.Applied("a")); diff != "" {
				t.Errorf("Applied (-want +got):\n%s", diff)
			}
			reqs := srv.Requests()
			for i, r := range reqs {
				if r.Accepted != (got[i].Code == 200) || r.StatusCode != got[i].Code || r.RequestID != "id-"+tt.applies[i][1] {
					t.Errorf("request %d recorded accepted=%v status=%d id=%q; answered %d", i, r.Accepted, r.StatusCode, r.RequestID, got[i].Code)
				}
				if r.Time.IsZero() || r.Decided.Before(r.Time) {
					t.Errorf("request %d arrived %v, decided %v", i, r.Time, r.Decided)
				}
			}
		})
	}
}

func TestRecordsFencingOfEveryApply(t *testing.T) {
	srv := operatortest.NewServer(operator.Physical)
	defer srv.Close()
	srv.SetFencing(true)
	c := operator.NewPMClient(srv.URL)
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	for i, f := range []uint64{2, 1} {
		c.Apply(t.Context(), operator.ApplyRequest{App: "a", Version: "v", RequestID: fmt.Sprint("r", i), RequestTime: at.Add(time.Duration(i)), Fence: f})
	}
	srv.SetFault(operatortest.Fault{Always503: true})
	c.Apply(t.Context(), operator.ApplyRequest{App: "a", Version: "v", RequestID: "r2", Fence: 3})
	type rec struct {
		ID       string
		At       time.Time
		Fence    uint64
		Accepted bool
		Status   int
	}
	var got []rec
	for _, r := range srv.Requests() {
		got = append(got, rec{r.RequestID, r.RequestTime, r.Fence, r.Accepted, r.StatusCode})
	}
	want := []rec{{"r0", at, 2, true, 200}, {"r1", at.Add(1), 1, false, 409}, {"r2", time.Time{}, 3, false, 503}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded (-want +got):\n%s", diff)
	}
}

func TestArrivalTimeBeforeLatency(t *testing.T) {
	srv := operatortest.NewServer(operator.Kubernetes)
	defer srv.Close()
	srv.SetFault(operatortest.Fault{Latency: 50 * time.Millisecond})
	before := time.Now()
	if _, err := operator.NewK8sClient(srv.URL).Apply(t.Context(), operator.ApplyRequest{App: "a", Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if r.Time.Before(before) || r.Decided.Sub(r.Time) < 50*time.Millisecond || !r.Accepted {
		t.Errorf("arrived %v, decided %v (latency 50ms), accepted %v", r.Time.Sub(before), r.Decided.Sub(before), r.Accepted)
	}
}

func TestSetMaxRecorded(t *testing.T) {
	srv := operatortest.NewServer(operator.Kubernetes)
	defer srv.Close()
	c := operator.NewK8sClient(srv.URL)
	for i := range 5 {
		c.Apply(t.Context(), operator.ApplyRequest{App: "a", Version: fmt.Sprint("v", i)})
	}
	srv.SetMaxRecorded(2)
	var got []string
	for _, r := range srv.Requests() {
		got = append(got, string(r.Body[len(`{"app":"a","version":"`):][:2]))
	}
	if diff := cmp.Diff([]string{"v3", "v4"}, got); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}
