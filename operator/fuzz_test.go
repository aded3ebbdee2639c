package operator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzClientResponse feeds arbitrary answers to every call: the client never
// panics and classifies each failure by the documented rules.
func FuzzClientResponse(f *testing.F) {
	f.Add(uint8(0), 200, []byte(`{"success":true,"message":"ok"}`))
	f.Add(uint8(0), 200, []byte(`{"success":false}`))
	f.Add(uint8(1), 200, []byte(`{"app":"a","healthy":{"level":100},"versions":[{"version":"v1","percent":1,"healthy":{"level":100},"nodes":[{"node":"n","healthy":{"level":100}}]}]}`))
	f.Add(uint8(1), 200, []byte(`{"app":"a","versions":[{"nodes":null}]}`))
	f.Add(uint8(1), 200, []byte(`{"app":"a","healthy":{"level":1e400}}`))
	f.Add(uint8(1), 200, []byte(`[1,2,3]`))
	f.Add(uint8(0), 200, []byte(`{"success":true}garbage`))
	f.Add(uint8(0), 503, []byte(`{"error":{"message":7}}`))
	f.Add(uint8(2), 401, []byte("\xff\xfe"))
	f.Add(uint8(0), 302, []byte(""))
	f.Add(uint8(1), 99, []byte("null"))
	f.Fuzz(func(t *testing.T, op uint8, code int, body []byte) {
		if code < 100 || code > 999 {
			code = 200 + code%100
			if code < 200 {
				code += 100
			}
		}
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{
				StatusCode: code,
				Header:     http.Header{"Content-Type": {"application/json"}},
				Body:       io.NopCloser(bytes.NewReader(body)),
				Request:    r,
			}, nil
		}), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		c, err := operator.NewClient(operator.Kubernetes, "http://op.test", operator.ClientOptions{HTTPClient: hc, MaxBodyBytes: 4096})
		if err != nil {
			t.Fatal(err)
		}
		name := []string{"apply", "status", "health"}[int(op)%3]
		err = call(t.Context(), c, name)
		if err == nil {
			if code < 200 || code > 299 {
				t.Fatalf("%s with HTTP %d succeeded", name, code)
			}
			return
		}
		var oe *operator.Error
		if !errors.As(err, &oe) {
			t.Fatalf("error %v is not a *operator.Error", err)
		}
		if oe.StatusCode != code || oe.Op != name {
			t.Fatalf("error %+v: want StatusCode %d, Op %s", oe, code, name)
		}
		var want []operator.Reason
		switch {
		case code >= 200 && code <= 299:
			want = []operator.Reason{operator.InvalidResponse, operator.Rejected} // Rejected: success false
		case code >= 400 && code <= 499:
			want = []operator.Reason{operator.Rejected}
		case code >= 500 && code <= 599:
			want = []operator.Reason{operator.Unavailable}
		default:
			want = []operator.Reason{operator.InvalidResponse}
		}
		if oe.Reason == operator.Rejected && code >= 200 && code <= 299 && name != "apply" {
			t.Fatalf("%s with HTTP %d rejected: %v", name, code, err)
		}
		for _, r := range want {
			if oe.Reason == r {
				return
			}
		}
		t.Fatalf("HTTP %d: Reason %v, want one of %v (%v)", code, oe.Reason, want, err)
	})
}

// FuzzParseEnvironments: any document parses or fails naming its source;
// what parses is valid and reads back the same; and a JSON list decoded in
// one pass gives the errors it gives record by record (forced by a last
// element that is not an object).
func FuzzParseEnvironments(f *testing.F) {
	f.Add([]byte(`[{"id":"a","type":"k8s","operator_url":"http://h:1"},{"id":"b","type":"pm","active":false}]`))
	f.Add([]byte(`{"environments":[{"id":"a","type":"mock","name":"x\u00e9"},{"id":"a","type":"mock"}]}`))
	f.Add([]byte(`[{"id":"a b","type":"x","extra":1},null,{"type":"pm","active":"no"}]`))
	f.Add([]byte("- {id: a, type: k8s}\n- {id: b, type: pm, active: false}\n"))
	f.Add([]byte(`[{id: a, type: k8s}]`))
	f.Add([]byte("[\n{\"id\": \"a\" \"type\": \"k8s\"}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		envs, err := operator.ParseEnvironments(data, "src")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "src: ") {
				t.Fatalf("error %q does not start with the source", err)
			}
		}
		for _, e := range envs {
			js, merr := json.Marshal(e)
			back, perr := operator.ParseEnvironment(js)
			if merr != nil || perr != nil || back != e {
				t.Fatalf("%+v reads back as %+v (%v, %v)", e, back, merr, perr)
			}
		}
		var list []json.RawMessage
		if json.Unmarshal(data, &list) != nil {
			return
		}
		forced := append(bytes.TrimRight(bytes.TrimSpace(data), "]"), []byte(",0]")...)
		if len(list) == 0 {
			forced = []byte("[0]")
		}
		_, ferr := operator.ParseEnvironments(forced, "src")
		var want []string
		if err != nil {
			want = strings.Split(err.Error(), "\n")
		}
		want = append(want, fmt.Sprintf("src: environments[%d]: not a JSON object", len(list)))
		if ferr == nil {
			t.Fatalf("%q parsed", forced)
		}
		if diff := cmp.Diff(want, strings.Split(ferr.Error(), "\n")); diff != "" {
			t.Errorf("errors record by record (-one pass +record by record):\n%s", diff)
		}
	})
}
