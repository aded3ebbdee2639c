package events

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkDecodeDeployRequest decodes and validates the requests of make
// bench's realistic mix: half of them a canary split whose first deployment
// carries a package, all with a CloudEvent time.
func BenchmarkDecodeDeployRequest(b *testing.B) {
	canary, _, err := NewDeployRequest("/master-service/bench", "env-001", DeployRequest{
		App: "app-017", Version: "1.1764748800.42", Deployments: []Deployment{
			{Version: "1.1764748800.42", Percent: 0.1, Package: []byte(`{"type":"docker","image":"registry.local/app-017:1.1764748800.42"}`)},
			{Version: "1.1764748800.41", Percent: 0.9},
		},
	}, WithTime(time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	plain, _, err := NewDeployRequest("/master-service/bench", "env-001", DeployRequest{App: "app-018", Version: "1.1764748800.42"},
		WithTime(time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	bin := binaryHeader(nil)
	cases := []struct {
		name string
		h    nats.Header
		body []byte
	}{
		{"structured/canary", canary.Header, canary.Data},
		{"structured/plain", plain.Header, plain.Data},
		{"binary", bin, []byte(binaryBody)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, _, err := DecodeDeployRequest(canary.Subject, c.h, c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeStatusQuery(b *testing.B) {
	msg, _, err := NewStatusQuery("/bench", "env-001", "my-app")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeStatusQuery(msg.Subject, msg.Header, msg.Data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeInvalid(b *testing.B) {
	body := structured(map[string]any{"time": "yesterday"})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeDeployRequest(testSubject, nil, body); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	source := SourceFor("bench")
	cases := []struct {
		name string
		make func() (*nats.Msg, error)
	}{
		{"deploy.result", func() (*nats.Msg, error) {
			return NewDeployResult(source, testRequest, 42, DeployResult{App: "my-app", Version: "v1.2.3",
				Operator: "kubernetes", Outcome: Succeeded, Success: true, Message: "applied", Attempts: 1, DurationMS: 12})
		}},
		{"deploy.result/superseded", func() (*nats.Msg, error) {
			msg := "superseded by request 0b9d3c1e-8a5f-4c1e-9d7a-2f6e4b8c1a3d, applied for env-001/my-app and newer than this one; not sent"
			return NewDeployResult(source, testRequest, 43, DeployResult{App: "my-app", Version: "v1.2.2",
				Operator: "kubernetes", Outcome: Superseded, Message: msg, DurationMS: 1,
				Error: &ErrorInfo{Code: CodeSuperseded, Message: msg}})
		}},
		{"status.result", func() (*nats.Msg, error) {
			return NewStatusResult(source, testRequest, 0, StatusResult{App: "my-app", Operator: "kubernetes",
				Status: AppStatus{App: "my-app", Healthy: AppHealth{Level: 100}, Versions: []VersionStatus{
					{Version: "v1.2.3", Percent: 1, Healthy: AppHealth{Level: 100}, Nodes: []NodeStatus{{Node: "n1", Healthy: AppHealth{Level: 100}}}}}}})
		}},
		{"operator.health", func() (*nats.Msg, error) {
			return NewHealth(source, Health{Environment: "env-001", Operator: "kubernetes", Endpoint: "http://k8s:8081",
				Healthy: true, LatencyMS: 3, CheckedAt: time.Now()})
		}},
		{"deploy.request", func() (*nats.Msg, error) {
			m, _, err := NewDeployRequest(source, "env-001", DeployRequest{App: "my-app", Version: "v1"})
			return m, err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.make(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatchResult is the cost of one result to a Batch (bench's
// measuring instrument: it must keep up with the bridge): reading a
// result's request id and outcome and counting it, against decoding it in
// full as a Deploy call's waiter does.
func BenchmarkBatchResult(b *testing.B) {
	const n = 1000
	msgs := make([]*nats.Msg, n)
	for i := range msgs {
		var err error
		req := Envelope{ID: fmt.Sprintf("bench-0123456789ab-%d", i), Environment: "bench-001"}
		msgs[i], err = NewDeployResult(SourceFor("bench"), req, uint64(i+1), DeployResult{App: "app-017", Version: "1.1764748800.42",
			Operator: "kubernetes", Outcome: Succeeded, Success: true, Message: "applied", Attempts: 1, DurationMS: 12})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("batch", func(b *testing.B) {
		batch, err := newBatch(defaultEncoder, "/bench", BatchOptions{Size: n, ID: "bench-0123456789ab"})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			m := msgs[i%n]
			batch.onMessage(m.Header, m.Data, time.Now())
			i++
		}
		if batch.results.Load() != min(int64(i), n) {
			b.Fatalf("%d results counted of %d", batch.results.Load(), min(i, n))
		}
	})
	b.Run("full decode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			m := msgs[i%n]
			if _, _, err := DecodeDeployResult(m.Header, m.Data); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
