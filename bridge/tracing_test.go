package bridge_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/boreas/operator-bridge/events"
)

// A request's traceparent is continued: the bridge's spans are in its trace,
// and its result points at the bridge's span.
func TestTracesContinueTheRequestsTrace(t *testing.T) {
	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentID = "00f067aa0ba902b7"
	)
	for _, tc := range []struct {
		env      string
		wantURL  bool
		callName string
	}{
		{"env-k8s", true, "POST"},
		{"env-mock", false, "POST"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			w := newWorld(t)
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
			w.startBridge(func(o *bridgeOpts) { o.cfg.TracerProvider = tp })

			var (
				mu  sync.Mutex
				got []string
			)
			sub, err := w.nc.Subscribe(events.DeployResultSubject(tc.env), func(m *nats.Msg) {
				env, _, err := events.DecodeDeployResult(m.Header, m.Data)
				if err != nil {
					t.Errorf("undecodable result: %v", err)
					return
				}
				tp, _ := env.Extensions()[events.ExtTraceParent].(string)
				mu.Lock()
				got = append(got, tp)
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()

			id := w.deploy(tc.env, events.DeployRequest{App: "shop", Version: "v2"},
				events.WithTraceParent(fmt.Sprintf("00-%s-%s-01", traceID, parentID)))
			if r := w.result(id); r.Outcome != events.Succeeded {
				t.Fatalf("outcome %s: %s", r.Outcome, r.Message)
			}

			byName := map[string]sdktrace.ReadOnlySpan{}
			w.eventually(15*time.Second, "the request's span ended", func() bool {
				for _, s := range rec.Ended() {
					byName[s.Name()] = s
				}
				_, ok := byName["deploy.request process"]
				return ok
			})
			process := byName["deploy.request process"]
			if process.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("process span kind = %s", process.SpanKind())
			}
			if got := process.Parent().SpanID().String(); got != parentID {
				t.Errorf("process span's parent = %s, want the request's %s", got, parentID)
			}
			for _, c := range []struct {
				name string
				kind trace.SpanKind
			}{
				{"order", trace.SpanKindInternal},
				{tc.callName, trace.SpanKindClient},
				{"deploy.result publish", trace.SpanKindProducer},
			} {
				s, ok := byName[c.name]
				if !ok {
					t.Errorf("no span %q among %v", c.name, names(rec.Ended()))
					continue
				}
				if s.SpanKind() != c.kind {
					t.Errorf("span %q kind = %s, want %s", c.name, s.SpanKind(), c.kind)
				}
				if s.Parent().SpanID() != process.SpanContext().SpanID() {
					t.Errorf("span %q's parent = %s, want the process span %s", c.name, s.Parent().SpanID(), process.SpanContext().SpanID())
				}
			}
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID().String() != traceID {
					t.Errorf("span %q in trace %s, want the request's %s", s.Name(), s.SpanContext().TraceID(), traceID)
				}
			}
			call := byName[tc.callName]
			wantAttrs := map[string]string{"http.request.method": "POST"}
			if tc.wantURL {
				wantAttrs["url.full"] = w.k8s.URL
			}
			gotAttrs := map[string]string{}
			for _, a := range call.Attributes() {
				if _, ok := map[string]bool{"http.request.method": true, "url.full": true}[string(a.Key)]; ok {
					gotAttrs[string(a.Key)] = a.Value.Emit()
				}
			}
			if diff := cmp.Diff(wantAttrs, gotAttrs); diff != "" {
				t.Errorf("operator call attributes (-want +got):\n%s", diff)
			}

			// This subscription may see the result after the world's did.
			w.eventually(15*time.Second, "the result on this subscription", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) > 0
			})
			mu.Lock()
			defer mu.Unlock()
			want := fmt.Sprintf("00-%s-%s-01", traceID, process.SpanContext().SpanID())
			if diff := cmp.Diff([]string{want}, got); diff != "" {
				t.Fatalf("results' traceparents (-want +got):\n%s", diff)
			}
		})
	}
}

// Without a tracer provider, a result copies its request's traceparent.
func TestUntracedResultCopiesTraceParent(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	got := make(chan string, 1)
	sub, err := w.nc.Subscribe(events.DeployResultSubject("env-mock"), func(m *nats.Msg) {
		env, _, err := events.DecodeDeployResult(m.Header, m.Data)
		if err != nil {
			t.Errorf("undecodable result: %v", err)
			return
		}
		tp, _ := env.Extensions()[events.ExtTraceParent].(string)
		got <- tp
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	w.result(w.deploy("env-mock", events.DeployRequest{App: "shop", Version: "v2"}, events.WithTraceParent(tp)))
	select {
	case g := <-got:
		if g != tp {
			t.Fatalf("result traceparent = %q, want the request's %q", g, tp)
		}
	case <-t.Context().Done():
		t.Fatal("no result seen")
	}
}

// A status query gets a consumer span in the query's trace, with the
// operator call and the publish as its children.
func TestStatusQueryTraced(t *testing.T) {
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	w := newWorld(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	w.startBridge(func(o *bridgeOpts) { o.cfg.TracerProvider = tp })
	msg, id, err := events.NewStatusQuery("/test", "env-k8s", "shop",
		events.WithTraceParent("00-"+traceID+"-b7ad6b7169203331-01"))
	if err != nil {
		t.Fatal(err)
	}
	w.publish(msg)
	w.statusResult(id)
	var got []string
	w.eventually(15*time.Second, "the query's span ended", func() bool {
		got = nil
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID().String() == traceID {
				got = append(got, s.Name())
			}
		}
		return len(got) == 3
	})
	want := []string{"GET", "status.result publish", "status.query process"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("spans in the query's trace, in order of ending (-want +got):\n%s", diff)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}
