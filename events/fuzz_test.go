package events

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// FuzzDecode feeds the decoders arbitrary bodies in both content modes: they
// must not panic, every error must carry one of the decoder's codes, and an
// Envelope without ID must come with ErrUnidentifiable and vice versa.
func FuzzDecode(f *testing.F) {
	f.Add(structured(nil), false, "", "", "")
	f.Add(structured(map[string]any{"time": "x"}), false, "", "application/cloudevents+json", "")
	f.Add(structured(map[string]any{"data": data(map[string]any{"deployments": []any{map[string]any{"version": "v1", "percent": 2}}})}), false, "", "", "")
	f.Add([]byte(binaryBody), true, "req-1", "application/json", TypeDeployRequest)
	f.Add([]byte(`{"app":"a","version":"v1"}`), true, "%zz", "", TypeDeployRequest)
	f.Add([]byte(`[]`), false, "", "application/cloudevents-batch+json", "")
	f.Add([]byte(`{"id":"x"}`), false, "", "", "")
	f.Add([]byte(`{"app":"a"}`), true, "q", "", TypeStatusQuery)
	f.Add([]byte(`{"app":"my-app","version":"v 1.0"}`), true, "req-2", "application/json", TypeDeployRequest)
	f.Add([]byte(`{"app":"a","version":"v1","deployments":[{"version":"v1","percent":20},{"version":"v0","percent":80}]}`), true, "req-3", "", TypeDeployRequest)
	f.Fuzz(func(t *testing.T, body []byte, binary bool, id, contentType, typ string) {
		h := nats.Header{}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		if binary {
			h.Set("ce-id", id)
			h.Set("ce-specversion", "1.0")
			h.Set("ce-source", "/fuzz")
			h.Set("ce-type", typ)
		}
		check := func(env Envelope, err error) {
			t.Helper()
			if err == nil {
				if env.ID == "" {
					t.Fatal("decoded without an ID")
				}
				return
			}
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("error %v is %T", err, err)
			}
			if e.Code != CodeInvalidEvent && e.Code != CodeInvalidData {
				t.Fatalf("code %q", e.Code)
			}
			if strings.Contains(e.Message, "pattern") || strings.Contains(e.Message, `\p{`) {
				t.Fatalf("error shows a regular expression: %v", err)
			}
			if (env.ID == "") != errors.Is(err, ErrUnidentifiable) {
				t.Fatalf("ID %q with error %v", env.ID, err)
			}
		}
		env, req, err := DecodeDeployRequest("deploy.request.env-1", h, body)
		check(env, err)
		if err == nil {
			if req.App == "" || req.Version == "" {
				t.Fatalf("accepted request without app or version: %+v", req)
			}
			if _, err := NewDeployResult(SourceFor("fuzz"), env, 1, DeployResult{App: req.App, Outcome: Succeeded, Success: true}); err != nil {
				t.Fatalf("cannot answer an accepted request: %v", err)
			}
		}
		env, _, err = DecodeStatusQuery("status.query.env-1", h, body)
		check(env, err)
		if _, _, err := DecodeStatusQueryOrData("operator-bridge.status.env-1", h, body); err != nil && !CodeOf(err).Valid() {
			t.Fatalf("error %v", err)
		}
	})
}
