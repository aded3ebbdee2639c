package events_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/bench/mix"
	"github.com/boreas/operator-bridge/events"
)

// A deploy request message of the differential tests: the body, the
// Content-Type header, a ce-id header (binary mode when not empty) and the
// subject it arrives on.
type fastCase struct {
	body        []byte
	contentType string
	ceID        string
	subject     string
}

func (c fastCase) header() nats.Header {
	h := nats.Header{}
	if c.contentType != "" {
		h.Set(events.HeaderContentType, c.contentType)
	}
	if c.ceID != "" {
		h.Set("ce-id", c.ceID)
		h.Set("ce-specversion", "1.0")
		h.Set("ce-source", "/fuzz")
		h.Set("ce-type", events.TypeDeployRequest)
	}
	return h
}

// errorView is what a caller can see of a decoding error.
type errorView struct {
	Text           string
	Code           events.ErrorCode
	Field, Message string
	Unidentifiable bool
}

func viewError(err error) *errorView {
	if err == nil {
		return nil
	}
	v := &errorView{Text: err.Error(), Code: events.CodeOf(err), Unidentifiable: errors.Is(err, events.ErrUnidentifiable)}
	if e, ok := errors.AsType[*events.Error](err); ok {
		v.Field, v.Message = e.Field, e.Message
	}
	return v
}

// checkSameDecode fails t unless DecodeDeployRequest and DecodeStatusQuery
// answer c exactly as their full paths do, and reports whether one of the
// fast paths took c.
func checkSameDecode(t *testing.T, c fastCase) bool {
	t.Helper()
	a := checkSame(t, c, events.FastDeployRequest, events.FullDeployRequest, events.DecodeDeployRequest)
	b := checkSame(t, c, events.FastStatusQuery, events.FullStatusQuery, events.DecodeStatusQuery)
	return a || b
}

type (
	fastFunc[T any]   func(subject string, h nats.Header, body []byte) (events.Envelope, T, bool)
	decodeFunc[T any] func(subject string, h nats.Header, body []byte) (events.Envelope, T, error)
)

// checkSame fails t unless public answers c exactly as full does, and fast
// either leaves c or decodes it as full does; it reports whether fast took c.
func checkSame[T any](t *testing.T, c fastCase, fast fastFunc[T], full, public decodeFunc[T]) bool {
	t.Helper()
	h := c.header()
	wantEnv, wantData, wantErr := full(c.subject, h, c.body)
	env, data, ok := fast(c.subject, h, c.body)
	if ok {
		if wantErr != nil {
			t.Fatalf("the fast path accepts what the full path refuses (%v): %q", wantErr, c.body)
		}
		if diff := cmp.Diff(wantEnv, env); diff != "" || wantEnv.Time.String() != env.Time.String() {
			t.Fatalf("fast path envelope of %q (-full +fast):\n%s%s / %s", c.body, diff, wantEnv.Time, env.Time)
		}
		if diff := cmp.Diff(wantData, data); diff != "" {
			t.Fatalf("fast path data of %q (-full +fast):\n%s", c.body, diff)
		}
	}
	gotEnv, gotData, gotErr := public(c.subject, h, c.body)
	if diff := cmp.Diff(viewError(wantErr), viewError(gotErr)); diff != "" {
		t.Fatalf("error of %q (-full +public):\n%s", c.body, diff)
	}
	if diff := cmp.Diff(wantEnv, gotEnv); diff != "" {
		t.Fatalf("envelope of %q (-full +public):\n%s", c.body, diff)
	}
	if diff := cmp.Diff(wantData, gotData); diff != "" {
		t.Fatalf("data of %q (-full +public):\n%s", c.body, diff)
	}
	return ok
}

// mixRequests returns structured deploy requests of bench's two mixes, each
// with a status query for its app.
func mixRequests(tb testing.TB) []fastCase {
	start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var out []fastCase
	for _, realistic := range []bool{true, false} {
		m := mix.New(mix.Names("bench-", 2), mix.Names("app-", 3), realistic, start)
		for i := range 6 {
			env, req := m.Request(i)
			msg, _, err := events.NewDeployRequest("/master-service/bench", env, req, events.WithTime(start.Add(time.Duration(i)*time.Millisecond)))
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, fastCase{msg.Data, msg.Header.Get(events.HeaderContentType), "", msg.Subject})
			q, _, err := events.NewStatusQuery("/dashboard", env, req.App)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, fastCase{q.Data, "", "", events.StatusEndpointSubject(env)})
		}
	}
	return out
}

// goldenRequests returns the deploy requests and status queries of
// testdata/golden.
func goldenRequests(tb testing.TB) []fastCase {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "deploy.request*.txt"))
	queries, qerr := filepath.Glob(filepath.Join("testdata", "golden", "status.query*.txt"))
	if err != nil || qerr != nil || len(files) == 0 || len(queries) == 0 {
		tb.Fatalf("no golden requests: %v %v", err, qerr)
	}
	files = append(files, queries...)
	var out []fastCase
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		head, body, _ := bytes.Cut(b, []byte("\n\n"))
		c := fastCase{body: body}
		for line := range strings.SplitSeq(string(head), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "subject":
				c.subject = v
			case events.HeaderContentType:
				c.contentType = v
			}
		}
		out = append(out, c)
	}
	return out
}

const fastEnvelope = `{"specversion":"1.0","id":"req-1","source":"/master-service/test","type":"io.boreas.deploy.request.v1",` +
	`"time":"2026-11-28T10:00:00+01:00","environment":"env-001","data":`

// fastCases are the differential tests' own cases: the first ones the fast
// path takes, the others it leaves to the full path, which accepts some of
// them and refuses the rest.
var fastCases = []struct {
	name string
	body string
	fast bool
}{
	{"minimal", fastEnvelope + `{"app":"a","version":"v1"}}`, true},
	{"no time, no extensions, data first", `{"data":{"version":"v1","app":"a"},"type":"io.boreas.deploy.request.v1","source":"https://ci.example.com/x?y=1","id":" 1 ","specversion":"1.0","subject":"a"}`, true},
	{"empty subject, empty time", `{"specversion":"1.0","id":"r","source":"/s","type":"io.boreas.deploy.request.v1","subject":"","time":"","data":{"app":"a","version":"v1"}}`, true},
	{"json content type with charset", `{"specversion":"1.0","id":"r","source":"/s","type":"io.boreas.deploy.request.v1","datacontenttype":"application/json; charset=utf-8","data":{"app":"a","version":"v1"}}`, true},
	{"unknown extension and fields", `{"specversion":"1.0","id":"r","source":"/s","type":"io.boreas.deploy.request.v1","x1":"y","data":{"app":"a","version":"v1","note":[1,2.5e3,{"k":null}],"":"\u00e9","deployments":[{"version":"v1","percent":1,"weight":true}]}}`, true},
	{"rollout false", fastEnvelope + `{"app":"a","version":"v1","rollout":false}}`, true},
	{"rollout object", fastEnvelope + `{"app":"a","version":"v1","rollout":{"timeout":"1h2m3.5s","min_healthy":0,"x":1}}}`, true},
	{"empty rollout, empty deployments", fastEnvelope + ` { "app" : "a" , "version" : "v1" , "rollout" : { } , "deployments" : [ ] } }` + "\n", true},
	{"package kept as sent", fastEnvelope + `{"app":"a","version":"v1","deployments":[{"package":{ "b" : [ "\"\\u00e9" ] , "a":-0.5E+2},"version":"v1","percent":0.25},{"version":"v0","percent":0.75}]}}`, true},
	{"non-ASCII version", fastEnvelope + `{"app":"a","version":"v1-é"}}`, false},
	{"escape in app", fastEnvelope + `{"app":"\u0061","version":"v1"}}`, false},
	{"upper-case field", fastEnvelope + `{"app":"a","version":"v1","APP":"b"}}`, false},
	{"folded field", fastEnvelope + `{"app":"a","verſion":"v2","version":"v1"}}`, false},
	{"duplicate field", fastEnvelope + `{"app":"a","app":"b","version":"v1"}}`, false},
	{"duplicate id", `{"id":"x",` + fastEnvelope[1:] + `{"app":"a","version":"v1"}}`, false},
	{"empty key in the envelope", `{"specversion":"1.0","":"x","id":"r","source":"/s","type":"io.boreas.deploy.request.v1","data":{"app":"a","version":"v1"}}`, false},
	{"number extension", `{"specversion":"1.0","n":1,"id":"r","source":"/s","type":"io.boreas.deploy.request.v1","data":{"app":"a","version":"v1"}}`, false},
	{"blank id", `{"specversion":"1.0","id":"  ","source":"/s","type":"io.boreas.deploy.request.v1","data":{"app":"a","version":"v1"}}`, false},
	{"percents over 1", fastEnvelope + `{"app":"a","version":"v1","deployments":[{"version":"v1","percent":0.5},{"version":"v0","percent":0.6}]}}`, false},
	{"percent as a string", fastEnvelope + `{"app":"a","version":"v1","deployments":[{"version":"v1","percent":"1"}]}}`, false},
	{"huge number in a package", fastEnvelope + `{"app":"a","version":"v1","deployments":[{"version":"v1","percent":1,"package":{"n":1e400}}]}}`, false},
	{"min_healthy 80.0", fastEnvelope + `{"app":"a","version":"v1","rollout":{"min_healthy":80.0}}}`, false},
	{"timeout .5s", fastEnvelope + `{"app":"a","version":"v1","rollout":{"timeout":".5s"}}}`, false},
	{"rollout true", fastEnvelope + `{"app":"a","version":"v1","rollout":true}}`, false},
	{"trailing garbage", fastEnvelope + `{"app":"a","version":"v1"}}x`, false},
	{"environment disagrees", strings.Replace(fastEnvelope, "env-001", "env-002", 1) + `{"app":"a","version":"v1"}}`, false},
	{"source changed by parsing", strings.Replace(fastEnvelope, "/master-service/test", "/a b", 1) + `{"app":"a","version":"v1"}}`, false},
	{"data not an object", fastEnvelope + `[]}`, false},
	{"status query", strings.Replace(fastEnvelope, "deploy.request", "status.query", 1) + `{"app":"a","x":{"app":1}}}`, true},
	{"status query with a bad app", strings.Replace(fastEnvelope, "deploy.request", "status.query", 1) + `{"app":"-a"}}`, false},
	{"status query with an upper-case field", strings.Replace(fastEnvelope, "deploy.request", "status.query", 1) + `{"app":"a","App":"b"}}`, false},
}

func TestFastDecode(t *testing.T) {
	for _, c := range append(goldenRequests(t), mixRequests(t)...) {
		if !checkSameDecode(t, c) {
			t.Errorf("the fast path leaves a common request to the full path: %s", c.body)
		}
	}
	for _, tt := range fastCases {
		t.Run(tt.name, func(t *testing.T) {
			subject := "deploy.request.env-001"
			if strings.Contains(tt.body, events.TypeStatusQuery) {
				subject = "operator-bridge.status.env-001"
			}
			if got := checkSameDecode(t, fastCase{[]byte(tt.body), "", "", subject}); got != tt.fast {
				t.Errorf("fast path took it: %v, want %v", got, tt.fast)
			}
		})
	}
	// Whatever the body, binary mode, a batch and a subject of another
	// type are the full path's.
	body := []byte(fastEnvelope + `{"app":"a","version":"v1"}}`)
	for _, c := range []fastCase{
		{body, "application/json", "req-1", "deploy.request.env-001"},
		{body, events.ContentTypeBatch, "", "deploy.request.env-001"},
		{body, "", "", "status.query.env-001"},
		{body, "", "", "deploy.request.env 1"},
	} {
		if checkSameDecode(t, c) {
			t.Errorf("the fast path took %+v", c)
		}
	}
}

// FuzzFastDecode holds DecodeDeployRequest and DecodeStatusQuery to their
// full paths: for every message, a fast path either leaves it to the full
// path or decodes it exactly as the full path does, and the answer is the
// full path's.
func FuzzFastDecode(f *testing.F) {
	for _, c := range append(goldenRequests(f), mixRequests(f)...) {
		f.Add(c.body, c.contentType, c.ceID, c.subject)
	}
	for _, c := range fastCases {
		f.Add([]byte(c.body), "", "", "deploy.request.env-001")
		f.Add([]byte(c.body), "", "", "status.query.env-001")
	}
	f.Add([]byte(`{"app":"a","version":"v1"}`), "application/json", "req-1", "deploy.request.env-001")
	f.Fuzz(func(t *testing.T, body []byte, contentType, ceID, subject string) {
		checkSameDecode(t, fastCase{body, contentType, ceID, subject})
	})
}

// FuzzFastDecodeValues is FuzzFastDecode with the fuzzer's bytes put into
// a deploy request's attribute and field values as they are, so that it
// tries values rather than JSON syntax.
func FuzzFastDecodeValues(f *testing.F) {
	f.Add("req-1", "/master-service/test", "my-app", "2026-11-28T10:00:00Z", "traceparent", "00-01", "my-app", "v1.2.3", "1", "5m", "80")
	f.Add(" r ", "https://ci/x?y", "", "", "x", "", "a.b_c-d", "1.1764748800.42", "0.10e1", "1h2.5ms", "0")
	f.Fuzz(func(t *testing.T, id, source, subject, tm, extName, extValue, app, version, percent, timeout, minHealthy string) {
		body := `{"specversion":"1.0","id":"` + id + `","source":"` + source + `","type":"` + events.TypeDeployRequest +
			`","subject":"` + subject + `","time":"` + tm + `","` + extName + `":"` + extValue +
			`","data":{"app":"` + app + `","version":"` + version + `","deployments":[{"version":"` + version + `","percent":` + percent +
			`}],"rollout":{"timeout":"` + timeout + `","min_healthy":` + minHealthy + `}}}`
		checkSameDecode(t, fastCase{[]byte(body), "", "", "deploy.request.env-001"})
	})
}

// valueRequest is a deploy request body with the given values put into it
// as they are.
type valueRequest struct {
	id, source, subject, time, extName, extValue, app, version, percent, timeout, minHealthy, contentType string
}

func (r valueRequest) body() []byte {
	return []byte(`{"specversion":"1.0","id":"` + r.id + `","source":"` + r.source + `","type":"` + events.TypeDeployRequest +
		`","subject":"` + r.subject + `","time":"` + r.time + `","` + r.extName + `":"` + r.extValue +
		`","datacontenttype":"` + r.contentType + `","data":{"app":"` + r.app + `","version":"` + r.version + `","deployments":[{"version":"` + r.version + `","percent":` + r.percent +
		`}],"rollout":{"timeout":"` + r.timeout + `","min_healthy":` + r.minHealthy + `}}}`)
}

var validValues = valueRequest{"req-1", "/master-service/test", "my-app", "2026-11-28T10:00:00Z", "traceparent", "00-01", "my-app", "v1.2.3", "1", "5m", "80", "application/json"}

// TestFastDecodeValues puts every byte, and characters of the Unicode
// classes the schema's patterns name, into each string value of a valid
// request, and many edge values into its numbers and durations: the
// fast path must take the valid request and agree with the full path on
// every variant.
func TestFastDecodeValues(t *testing.T) {
	if !checkSameDecode(t, fastCase{validValues.body(), "", "", "deploy.request.env-001"}) {
		t.Fatalf("the fast path leaves %s to the full path", validValues.body())
	}
	chars := []string{"é", "\u00a0", "\u2028", "\u200b", "\ufeff", "µ", "μ", "\U0001F600", "\xed\xa0\x80"}
	for c := range 256 {
		chars = append(chars, string([]byte{byte(c)}))
	}
	fields := []struct {
		name string
		set  func(*valueRequest, string)
	}{
		{"id", func(r *valueRequest, c string) { r.id = "r" + c + "1" }},
		{"blank id", func(r *valueRequest, c string) { r.id = c }},
		{"source", func(r *valueRequest, c string) { r.source = "/s" + c + "x" }},
		{"source start", func(r *valueRequest, c string) { r.source = c + "/s" }},
		{"subject", func(r *valueRequest, c string) { r.subject = c }},
		{"time", func(r *valueRequest, c string) { r.time = "2026-11-28T10:00:00" + c }},
		{"extension name", func(r *valueRequest, c string) { r.extName = "x" + c }},
		{"extension value", func(r *valueRequest, c string) { r.extValue = "v" + c }},
		{"app", func(r *valueRequest, c string) { r.app = "a" + c + "b" }},
		{"app start", func(r *valueRequest, c string) { r.app = c + "a" }},
		{"version", func(r *valueRequest, c string) { r.version = "v" + c + "1" }},
		{"timeout", func(r *valueRequest, c string) { r.timeout = "5" + c }},
		{"datacontenttype", func(r *valueRequest, c string) { r.contentType = "application/json;" + c }},
	}
	for _, f := range fields {
		t.Run(f.name, func(t *testing.T) {
			for _, c := range chars {
				r := validValues
				f.set(&r, c)
				checkSameDecode(t, fastCase{r.body(), "", "", "deploy.request.env-001"})
			}
		})
	}
	numbers := []struct {
		name   string
		set    func(*valueRequest, string)
		values []string
	}{
		{"percent", func(r *valueRequest, v string) { r.percent = v }, []string{"0", "1", "-0", "0.5", "1.0000000000000002", "1.00000000000000001",
			"1e0", "1E-1", "10e-1", "2", "-0.1", "01", ".5", "1.", "0x1", "1e400", "1e-400", "NaN", "true", `"1"`, "null", "[1]"}},
		{"min_healthy", func(r *valueRequest, v string) { r.minHealthy = v }, []string{"0", "80", "100", "101", "1000", "-0", "-1", "80.0",
			"8e1", "0080", "true", `"80"`, "null", "1e400"}},
		{"timeout", func(r *valueRequest, v string) { r.timeout = v }, []string{"5m", "1h2.5ms", "1.5h", "0s", "0.0s", "-5m", "+5m", ".5s", "5.s",
			"5", "5µs", "5μs", "5us", "5ns", "1e3s", "1h-", "5m ", "9223372036854775807ns", "9223372036854775808ns", "99999999999999999999h", "2562047h", "2562048h", ""}},
		{"time", func(r *valueRequest, v string) { r.time = v }, []string{"", "2026-11-28T10:00:00.123456789+01:00", "2026-11-28t10:00:00z",
			"2026-11-28 10:00:00Z", "2026-02-30T10:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T10:00:60Z", "2026-11-28T10:00:00+24:00", "0000-01-01T00:00:00Z"}},
		{"source", func(r *valueRequest, v string) { r.source = v }, []string{"", " ", "/", "//host/x", "urn:x:y", "a:b/c", "http://[::1]:80/x", "http://x/%41",
			"http://x/a%2Fb", "/a%20b", "./x", "x", "?q", "#f", "/a/../b", "mailto:a@b", "HTTP://X/Y", "http://x:y@z/", "http://x/y?", "http://x/y#"}},
		{"version", func(r *valueRequest, v string) { r.version = v }, []string{"", strings.Repeat("v", 128), strings.Repeat("v", 129),
			strings.Repeat("é", 128), strings.Repeat("é", 129)}},
		{"app", func(r *valueRequest, v string) { r.app = v }, []string{"", "a", strings.Repeat("a", 128), strings.Repeat("a", 129), "-a", "a-", "a..b"}},
		{"datacontenttype", func(r *valueRequest, v string) { r.contentType = v }, []string{"", "application/json; charset=utf-8", "application/json;",
			"application/json; x", "application/json;;", "application/json; a=1; a=2", "application/jsonx", "Application/JSON", " application/json",
			"application/json ", "text/json", "application/cloudevents+json", `application/json; charset="utf-8"`}},
	}
	for _, n := range numbers {
		t.Run(n.name+" values", func(t *testing.T) {
			for _, v := range n.values {
				r := validValues
				n.set(&r, v)
				checkSameDecode(t, fastCase{r.body(), "", "", "deploy.request.env-001"})
			}
		})
	}
}
