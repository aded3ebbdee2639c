package statuspage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed"
	"github.com/boreas/operator-bridge/statuspage"
)

// js is a real JetStream with the contract's streams.
func newJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(t.TempDir(), "js")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range events.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	return js
}

func publish(t *testing.T, js jetstream.JetStream, msg *nats.Msg) {
	t.Helper()
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatalf("publish %s: %v", msg.Subject, err)
	}
}

var checked = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func publishHealth(t *testing.T, js jetstream.JetStream, h events.Health) {
	t.Helper()
	msg, err := events.NewHealth("/operator-bridge/test", h)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, msg)
}

var seq uint64

func publishResult(t *testing.T, js jetstream.JetStream, r events.DeployResult) {
	t.Helper()
	seq++
	msg, err := events.NewDeployResult("/operator-bridge/test", events.Envelope{ID: r.RequestID, Environment: r.Environment}, seq, r)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, msg)
}

// publishProgress publishes a deploy.progress event as the rollout tracker
// does: structured mode.
func publishProgress(t *testing.T, js jetstream.JetStream, data map[string]any) {
	t.Helper()
	seq++
	ev := map[string]any{
		"specversion": "1.0", "id": fmt.Sprintf("progress-%d", seq), "source": "/operator-bridge/test",
		"type": statuspage.TypeDeployProgress, "time": time.Now().UTC().Format(time.RFC3339Nano),
		"datacontenttype": "application/json", "environment": data["environment"], "requestid": data["request_id"],
		"data": data,
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("deploy.progress." + data["environment"].(string))
	msg.Header.Set("Content-Type", events.ContentTypeStructured)
	msg.Data = body
	publish(t, js, msg)
}

// publishProgressBinary publishes a deploy.progress event in binary mode
// (ce- headers, the data as the body).
func publishProgressBinary(t *testing.T, js jetstream.JetStream, data map[string]any) {
	t.Helper()
	seq++
	body, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("deploy.progress." + data["environment"].(string))
	msg.Header.Set("ce-specversion", "1.0")
	msg.Header.Set("ce-id", fmt.Sprintf("progress-%d", seq))
	msg.Header.Set("ce-source", "%2Foperator-bridge%2Ftest")
	msg.Header.Set("ce-type", statuspage.TypeDeployProgress)
	msg.Header.Set("ce-time", time.Now().UTC().Format(time.RFC3339Nano))
	msg.Header.Set("Content-Type", "application/json")
	msg.Data = body
	publish(t, js, msg)
}

func publishDeadLetter(t *testing.T, js jetstream.JetStream, from, reason string, body string) {
	t.Helper()
	msg := nats.NewMsg(events.DeadLetterSubject(from))
	msg.Header.Set(events.HeaderBridgeError, reason)
	msg.Header.Set(events.HeaderBridgeSubject, from)
	msg.Data = []byte(body)
	publish(t, js, msg)
}

// startPage runs a page on js and serves it.
func startPage(t *testing.T, cfg statuspage.Config) *httptest.Server {
	t.Helper()
	p, err := statuspage.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

var (
	tbodyRE = regexp.MustCompile(`(?s)<(tbody|div) id="([a-z]+)">(.*?)</(tbody|div)>`)
	rowRE   = regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`)
	cellRE  = regexp.MustCompile(`(?s)<t[hd][^>]*>(.*?)</t[hd]>`)
	tagRE   = regexp.MustCompile(`<[^>]*>`)
	spaceRE = regexp.MustCompile(`\s+`)
)

// rows returns the text of each cell of each row of the page's section id
// (a tbody), as a reader sees them.
func rows(page, id string) [][]string {
	var out [][]string
	for _, m := range tbodyRE.FindAllStringSubmatch(page, -1) {
		if m[2] != id {
			continue
		}
		for _, r := range rowRE.FindAllStringSubmatch(m[3], -1) {
			var cells []string
			for _, c := range cellRE.FindAllStringSubmatch(r[1], -1) {
				cells = append(cells, text(c[1]))
			}
			out = append(out, cells)
		}
	}
	return out
}

// text is HTML as a reader sees it: no tags, collapsed white space.
func text(s string) string {
	return strings.TrimSpace(spaceRE.ReplaceAllString(html.UnescapeString(tagRE.ReplaceAllString(s, " ")), " "))
}

// waitPage polls the page at url until cond holds for its body.
func waitPage(t *testing.T, url, what string, cond func(body string) bool) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(t, url)
		if code == http.StatusOK && cond(body) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; page (%d):\n%s", what, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func synced(body string) bool { return !strings.Contains(body, "reading history") }

// environments is what the bridge lists: env-a (Kubernetes), env-b
// (physical), env-off (inactive).
func environments() []events.EnvironmentInfo {
	return []events.EnvironmentInfo{
		{ID: "env-a", Name: "prod", Type: "kubernetes", Endpoint: "http://k8s.local:8081", Active: true},
		{ID: "env-b", Name: "lab", Type: "physical", Endpoint: "http://user:secret@pm.local:8082", Active: true},
		{ID: "env-off", Name: "old", Type: "kubernetes", Endpoint: "http://k8s.local:8081", Active: false},
	}
}

// fill publishes one picture of a cluster.
func fill(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	publishHealth(t, js, events.Health{Environment: "env-a", Operator: "kubernetes", Endpoint: "http://k8s.local:8081",
		Healthy: true, LatencyMS: 3, CheckedAt: checked, Circuit: "closed"})
	publishHealth(t, js, events.Health{Environment: "env-b", Operator: "physical", Endpoint: "http://pm.local:8082",
		Healthy: true, LatencyMS: 5, CheckedAt: checked, Circuit: "closed"})
	// env-b's later health wins over its earlier one.
	publishHealth(t, js, events.Health{Environment: "env-b", Operator: "physical", Endpoint: "http://pm.local:8082",
		Healthy: false, LatencyMS: 250, CheckedAt: checked.Add(time.Minute), ConsecutiveFailures: 5,
		Error: "health: 503 Service Unavailable", Circuit: "open"})

	publishResult(t, js, events.DeployResult{RequestID: "r1", Environment: "env-a", App: "shop", Version: "v1",
		Operator: "kubernetes", Outcome: events.Succeeded, Success: true, Message: "applied v1 to shop", Attempts: 1, DurationMS: 12})
	publishResult(t, js, events.DeployResult{RequestID: "r2", Environment: "env-a", App: "shop", Version: "v2",
		Operator: "kubernetes", Outcome: events.Succeeded, Success: true, Message: "applied v2 to shop", Attempts: 1, DurationMS: 9})
	publishResult(t, js, events.DeployResult{RequestID: "r3", Environment: "env-b", App: "billing", Version: "v7",
		Operator: "physical", Outcome: events.Failed, Attempts: 4, DurationMS: 2500,
		Error: &events.ErrorInfo{Code: events.CodeOperatorUnavailable, Message: "503 from the operator", Retryable: true}})
	publishResult(t, js, events.DeployResult{RequestID: "r4", Environment: "env-b", App: "cart", Version: "v3",
		Operator: "physical", Outcome: events.Succeeded, Success: true, Message: "applied v3 to cart", Attempts: 1, DurationMS: 30})

	// r2 is rolling out; r4 has converged; a future field is ignored.
	publishProgress(t, js, map[string]any{"request_id": "r2", "environment": "env-a", "app": "shop",
		"target":   []map[string]any{{"version": "v2", "percent": 0.2}, {"version": "v1", "percent": 0.8}},
		"observed": map[string]any{"app": "shop", "healthy": map[string]any{"level": 100}, "versions": []map[string]any{{"version": "v2", "percent": 0.1, "healthy": map[string]any{"level": 100}}, {"version": "v1", "percent": 0.9, "healthy": map[string]any{"level": 100}}}},
		"phase":    "progressing", "final": false, "message": "v2 at 10% of 20%", "elapsed_ms": 5000, "future_field": "x"})
	publishProgress(t, js, map[string]any{"request_id": "r4", "environment": "env-b", "app": "cart",
		"target": []map[string]any{{"version": "v3", "percent": 1}}, "phase": "progressing", "final": false, "message": "v3 at 50%", "elapsed_ms": 1000})
	// The final one comes in binary mode.
	publishProgressBinary(t, js, map[string]any{"request_id": "r4", "environment": "env-b", "app": "cart",
		"target": []map[string]any{{"version": "v3", "percent": 1}}, "phase": "converged", "final": true, "message": "converged", "elapsed_ms": 2000})

	publishDeadLetter(t, js, "deploy.request.env-a", "no CloudEvent id", "garbage 1")
	publishDeadLetter(t, js, "deploy.request.env-b", "deploy.request.env-b.x: no environment a result could go to", "{}")
}

func TestPageShowsTheCluster(t *testing.T) {
	js := newJetStream(t)
	fill(t, js)
	srv := startPage(t, statuspage.Config{JetStream: js, Environments: environments})

	page := waitPage(t, srv.URL+"/", "everything read", func(b string) bool {
		return synced(b) && len(rows(b, "results")) == 4 && strings.Contains(b, "<strong>2</strong> dead letters")
	})
	tests := []struct {
		section string
		want    [][]string
	}{
		{"envs", [][]string{
			{"env-a", "prod", "kubernetes", "http://k8s.local:8081", "healthy", "closed", "2026-11-28 10:00:00Z", "3 ms"},
			{"env-b", "lab", "physical", "http://pm.local:8082", "unhealthy health: 503 Service Unavailable", "open", "2026-11-28 10:01:00Z", "250 ms"},
			{"env-off", "old", "kubernetes", "http://k8s.local:8081", "inactive", "unknown", "—", "—"},
		}},
		{"rollouts", [][]string{
			{"env-a", "shop", "v2 20%, v1 80%", "v2 10% (health 100), v1 90% (health 100)", "progressing", "v2 at 10% of 20%", "5s"},
		}},
		{"results", [][]string{
			{"env-b", "cart", "v3", "succeeded", "—", "applied v3 to cart", "1", "30 ms"},
			{"env-b", "billing", "v7", "failed", "operator_unavailable retryable", "503 from the operator", "4", "2.5s"},
			{"env-a", "shop", "v2", "succeeded", "—", "applied v2 to shop", "1", "9 ms"},
			{"env-a", "shop", "v1", "succeeded", "—", "applied v1 to shop", "1", "12 ms"},
		}},
		{"applied", [][]string{
			{"env-a", "shop", "v2", "progressing"},
			{"env-b", "cart", "v3", "converged"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.section, func(t *testing.T) {
			got := rows(page, tt.section)
			switch tt.section {
			case "results", "rollouts": // without the time of publishing
				for i := range got {
					got[i] = got[i][1:]
				}
			case "applied":
				for i := range got {
					got[i] = append(got[i][:3:3], got[i][4])
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s rows (-want +got):\n%s", tt.section, diff)
			}
		})
	}
	t.Run("deadletters", func(t *testing.T) {
		var dl [][]string
		for _, r := range rowRE.FindAllStringSubmatch(page[strings.Index(page, `id="deadletters"`):], -1) {
			var cells []string
			for _, c := range cellRE.FindAllStringSubmatch(r[1], -1) {
				cells = append(cells, text(c[1]))
			}
			if len(cells) == 4 && cells[0] != "Stored" {
				dl = append(dl, cells[1:])
			}
		}
		want := [][]string{
			{"deploy.request.env-b", "deploy.request.env-b.x: no environment a result could go to", "2 B"},
			{"deploy.request.env-a", "no CloudEvent id", "9 B"},
		}
		if diff := cmp.Diff(want, dl); diff != "" {
			t.Errorf("dead letters (-want +got):\n%s", diff)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		if strings.Contains(page, "secret") {
			t.Error("the page shows an endpoint's credentials")
		}
	})
	t.Run("summary", func(t *testing.T) {
		got := text(page[strings.Index(page, `<ul class="summary">`):strings.Index(page, `</ul>`)])
		want := "3 environments 1 unhealthy 1 circuit open 1 rollout in progress 2 dead letters"
		if got != want {
			t.Errorf("summary %q, want %q", got, want)
		}
	})
}

func TestPageFilter(t *testing.T) {
	js := newJetStream(t)
	fill(t, js)
	srv := startPage(t, statuspage.Config{JetStream: js, Environments: environments})
	waitPage(t, srv.URL+"/", "everything read", func(b string) bool { return synced(b) && len(rows(b, "results")) == 4 })

	tests := []struct {
		query                     string
		envs, results, dead, apps []string
	}{
		{"env=ENV-B", []string{"env-b"}, []string{"cart", "billing"}, []string{"deploy.request.env-b"}, []string{"cart"}},
		{"app=shop", []string{"env-a", "env-b", "env-off"}, []string{"shop", "shop"}, []string{"deploy.request.env-b", "deploy.request.env-a"}, []string{"shop"}},
		{"env=env-a&app=cart", []string{"env-a"}, nil, []string{"deploy.request.env-a"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			_, page := get(t, srv.URL+"/?"+tt.query)
			got := struct{ Envs, Results, Dead, Apps []string }{}
			for _, r := range rows(page, "envs") {
				if len(r) > 1 {
					got.Envs = append(got.Envs, r[0])
				}
			}
			for _, r := range rows(page, "results") {
				if len(r) > 1 {
					got.Results = append(got.Results, r[2])
				}
			}
			for _, r := range rows(page, "applied") {
				if len(r) > 1 {
					got.Apps = append(got.Apps, r[1])
				}
			}
			for _, m := range regexp.MustCompile(`<td class="mono">(deploy[^<]*)</td>`).FindAllStringSubmatch(page, -1) {
				got.Dead = append(got.Dead, m[1])
			}
			want := struct{ Envs, Results, Dead, Apps []string }{tt.envs, tt.results, tt.dead, tt.apps}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("filtered page (-want +got):\n%s", diff)
			}
			// The form keeps the filter, and the live updates follow it.
			if q := parseQuery(t, tt.query); !strings.Contains(page, `data-events="/events?`+html.EscapeString(q)+`"`) {
				t.Errorf("the live updates do not keep the filter %q", q)
			}
		})
	}
}

func parseQuery(t *testing.T, q string) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/?"+q, nil)
	return r.URL.Query().Encode()
}

func TestHistoryIsBounded(t *testing.T) {
	js := newJetStream(t)
	for i := 1; i <= 5; i++ {
		publishResult(t, js, events.DeployResult{RequestID: fmt.Sprintf("r%d", i), Environment: "env-a", App: "shop",
			Version: fmt.Sprintf("v%d", i), Outcome: events.Succeeded, Success: true, Attempts: 1})
	}
	srv := startPage(t, statuspage.Config{JetStream: js, History: 3})
	page := waitPage(t, srv.URL+"/", "the results", func(b string) bool { return synced(b) && len(rows(b, "results")) == 3 })
	var versions []string
	for _, r := range rows(page, "results") {
		versions = append(versions, r[3])
	}
	if diff := cmp.Diff([]string{"v5", "v4", "v3"}, versions); diff != "" {
		t.Errorf("results kept (-want +got):\n%s", diff)
	}
	if got := rows(page, "applied"); len(got) != 1 || got[0][2] != "v5" {
		t.Errorf("applied last: %v, want shop at v5", got)
	}
}

// sse reads server-sent events.
type sse struct {
	t      *testing.T
	sc     *bufio.Scanner
	latest map[string]string // the last data of each event name read
}

// next returns the next event's name and data.
func (s *sse) next() (string, string) {
	s.t.Helper()
	var name string
	var data []string
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "" && name != "":
			s.latest[name] = strings.Join(data, "\n")
			return name, s.latest[name]
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
	s.t.Fatalf("event stream ended: %v", s.sc.Err())
	return "", ""
}

// until reads events until the latest one named name satisfies cond.
func (s *sse) until(name string, cond func(data string) bool) string {
	s.t.Helper()
	if d, ok := s.latest[name]; ok && cond(d) {
		return d
	}
	for {
		n, d := s.next()
		if n == name && cond(d) {
			return d
		}
	}
}

func openEvents(t *testing.T, url string) *sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	return &sse{t: t, sc: sc, latest: map[string]string{}}
}

func TestEventsPushChanges(t *testing.T) {
	js := newJetStream(t)
	fill(t, js)
	srv := startPage(t, statuspage.Config{JetStream: js, Environments: environments})
	waitPage(t, srv.URL+"/", "everything read", func(b string) bool { return synced(b) && len(rows(b, "results")) == 4 })

	s := openEvents(t, srv.URL+"/events?env=env-a")
	all := openEvents(t, srv.URL+"/events") // a second page, unfiltered
	// On connecting, every section comes, filtered like the page.
	envs := s.until("envs", func(string) bool { return true })
	if !strings.Contains(envs, `id="env-env-a"`) || strings.Contains(envs, `id="env-env-b"`) {
		t.Errorf("first envs event is not env-a alone:\n%s", envs)
	}

	publishResult(t, js, events.DeployResult{RequestID: "r9", Environment: "env-b", App: "shop", Version: "v-other",
		Outcome: events.Succeeded, Success: true, Attempts: 1})
	publishResult(t, js, events.DeployResult{RequestID: "r10", Environment: "env-a", App: "shop", Version: "v10",
		Outcome: events.Rejected, Attempts: 0, Error: &events.ErrorInfo{Code: events.CodeInvalidData, Message: "version is required"}})
	res := s.until("results", func(d string) bool { return strings.Contains(d, "v10") })
	if strings.Contains(res, "v-other") {
		t.Error("a result of another environment reached a page filtered to env-a")
	}
	all.until("results", func(d string) bool { return strings.Contains(d, "v10") && strings.Contains(d, "v-other") })
	if got := rows(`<tbody id="results">`+res+`</tbody>`, "results"); len(got) == 0 || got[0][4] != "rejected" || got[0][5] != "invalid_data" {
		t.Errorf("newest result row %v, want the rejected v10 first", got)
	}

	publishHealth(t, js, events.Health{Environment: "env-a", Operator: "kubernetes", Endpoint: "http://k8s.local:8081",
		Healthy: false, LatencyMS: 500, CheckedAt: checked.Add(time.Hour), Error: "connection refused", Circuit: "open"})
	s.until("envs", func(d string) bool {
		return strings.Contains(d, `data-state="unhealthy"`) && strings.Contains(d, `data-circuit="open"`)
	})
	s.until("summary", func(d string) bool { return strings.Contains(text(d), "1 unhealthy 1 circuit open") })

	publishProgress(t, js, map[string]any{"request_id": "r10b", "environment": "env-a", "app": "search",
		"target": []map[string]any{{"version": "v1", "percent": 1}}, "phase": "progressing", "message": "v1 at 30%"})
	s.until("rollouts", func(d string) bool { return strings.Contains(d, "v1 at 30%") })

	publishDeadLetter(t, js, "deploy.request.env-a", "no CloudEvent id", "x")
	s.until("deadletters", func(d string) bool { return strings.Contains(text(d), "3 messages") })
}

func TestEventsEndWithRun(t *testing.T) {
	js := newJetStream(t)
	p, err := statuspage.New(statuspage.Config{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	srv := httptest.NewServer(p)
	defer srv.Close()
	s := openEvents(t, srv.URL+"/events")
	s.until("summary", func(string) bool { return true })
	cancel()
	<-done
	// The stream ends: a page sees the connection lost.
	for s.sc.Scan() {
	}
}

func TestNewNeedsJetStream(t *testing.T) {
	if _, err := statuspage.New(statuspage.Config{}); err == nil {
		t.Error("New without JetStream: no error")
	}
}

// TestStreamsCreatedLater: a page started before the streams exist follows
// them once they do.
func TestStreamsCreatedLater(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(t.TempDir(), "js")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	page := startPage(t, statuspage.Config{JetStream: js, RetryDelay: 20 * time.Millisecond})
	if _, body := get(t, page.URL+"/"); !strings.Contains(body, "reading history") {
		t.Fatal("without streams, the page does not say it is still reading")
	}
	for _, cfg := range events.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	publishHealth(t, js, events.Health{Environment: "env-late", Operator: "mock", Endpoint: "mock", Healthy: true, CheckedAt: checked, Circuit: "closed"})
	waitPage(t, page.URL+"/", "env-late healthy", func(b string) bool {
		return synced(b) && strings.Contains(b, `id="env-env-late" data-state="healthy"`)
	})
}

// TestManyEnvironments: the table stops at 1000 rows and says how many
// more there are; the summary counts them all, the filter finds the rest.
func TestManyEnvironments(t *testing.T) {
	js := newJetStream(t)
	var list []events.EnvironmentInfo
	for i := range 1003 {
		list = append(list, events.EnvironmentInfo{ID: fmt.Sprintf("env-%04d", i), Type: "mock", Endpoint: "mock", Active: true})
	}
	srv := startPage(t, statuspage.Config{JetStream: js, Environments: func() []events.EnvironmentInfo { return list }})
	page := waitPage(t, srv.URL+"/", "the page", synced)
	got := rows(page, "envs")
	if len(got) != 1001 || got[1000][0] != "3 more environments: filter to see them." {
		t.Errorf("%d rows, the last %v; want 1000 environments and a note of 3 more", len(got), got[len(got)-1])
	}
	if !strings.Contains(text(page), "1003 environments") {
		t.Error("the summary does not count every environment")
	}
	_, page = get(t, srv.URL+"/?env=env-1002")
	if got := rows(page, "envs"); len(got) != 1 || got[0][0] != "env-1002" {
		t.Errorf("filtered to env-1002: %v", got)
	}
}
