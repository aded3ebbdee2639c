package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

// batchSeen records what a Batch's OnResult was called with.
type batchSeen struct {
	mu   sync.Mutex
	seen []BatchResult
}

func (s *batchSeen) add(r BatchResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, r)
}

func (s *batchSeen) all() []BatchResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BatchResult(nil), s.seen...)
}

func newBatchFor(t *testing.T, c *Client, opts BatchOptions) *Batch {
	t.Helper()
	b, err := c.NewBatch(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

// waitFor fails the test when ch is not closed in a long while: a lost
// result, never a slow one.
func waitFor(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never happened", what)
	}
}

func TestBatchFollowsEveryResult(t *testing.T) {
	url := startJetStream(t)
	respondDeploys(t, url)
	c := newClient(t, url)
	var seen batchSeen
	const n = 60
	b := newBatchFor(t, c, BatchOptions{Size: n, MaxInFlight: 7, OnResult: seen.add})

	ids := map[string]int{}
	for i := range n {
		// The batch names its requests: an id the caller sets is not used.
		id, err := b.Publish(t.Context(), fmt.Sprintf("env-%d", i%3), DeployRequest{App: "app", Version: fmt.Sprint("v", i)},
			WithID("mine"), WithTime(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = i
	}
	waitFor(t, "every result", b.Answered())

	if want := (BatchStats{Published: n, Results: n}); b.Stats() != want {
		t.Errorf("stats %+v, want %+v", b.Stats(), want)
	}
	got := seen.all()
	if len(got) != n {
		t.Fatalf("OnResult called %d times, want %d", len(got), n)
	}
	for _, r := range got {
		if i, ok := ids[r.RequestID]; !ok || i != r.Index || r.Count != 1 || r.Outcome != Succeeded || r.Latency <= 0 {
			t.Errorf("result %+v (published as index %d, %t)", r, i, ok)
		}
		if want := fmt.Sprintf("%s-%d", b.ID(), r.Index); r.RequestID != want {
			t.Errorf("request id %q, want %q", r.RequestID, want)
		}
	}
}

// withMsgID is msg stored under another Nats-Msg-Id: what a result
// published again after a redelivery is, once the duplicate window is past.
func withMsgID(msg *nats.Msg, id string) *nats.Msg {
	h := nats.Header{}
	for k, v := range msg.Header {
		h[k] = v
	}
	h.Set(HeaderMsgID, id)
	return &nats.Msg{Subject: msg.Subject, Header: h, Data: msg.Data}
}

func TestBatchCountsDuplicatesAndIgnoresOthers(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)
	_, js := connect(t, url)
	var seen batchSeen
	b := newBatchFor(t, c, BatchOptions{Size: 3, ID: "b1", OnResult: seen.add})
	for range 3 {
		if _, err := b.Publish(t.Context(), "env-d", DeployRequest{App: "app", Version: "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the acknowledgements", b.Acked())
	// The stream's order: the last first result comes last, so that once
	// it is counted all the others have been seen.
	for _, msg := range []*nats.Msg{
		resultFor(t, "env-d", "b1-0"),
		resultFor(t, "env-d", "b1-1"),
		withMsgID(resultFor(t, "env-d", "b1-1"), "again"),
		resultFor(t, "env-d", "b10-1"), // another batch
		resultFor(t, "env-d", "b1-3"),  // past the batch's size
		resultFor(t, "env-d", "b1-x"),  // not an index
		resultFor(t, "env-d", "other"), // not a batch's
		{Subject: "deploy.result.env-d", Header: nats.Header{HeaderMsgID: {"junk"}}, Data: []byte("not json")},
		resultFor(t, "env-d", "b1-2"),
	} {
		if _, err := js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every result", b.Answered())

	if want := (BatchStats{Published: 3, Results: 3, Duplicates: 1}); b.Stats() != want {
		t.Errorf("stats %+v, want %+v", b.Stats(), want)
	}
	type seenResult struct {
		Index, Count int
		ID           string
	}
	var got []seenResult
	for _, r := range seen.all() {
		got = append(got, seenResult{r.Index, r.Count, r.RequestID})
	}
	want := []seenResult{{0, 1, "b1-0"}, {1, 1, "b1-1"}, {1, 2, "b1-1"}, {2, 1, "b1-2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OnResult (-want +got):\n%s", diff)
	}
}

func TestBatchPublishWaitsForAFreeSlot(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)
	_, js := connect(t, url)
	b := newBatchFor(t, c, BatchOptions{Size: 3, MaxInFlight: 2, ID: "slots"})
	for range 2 {
		if _, err := b.Publish(t.Context(), "env-s", DeployRequest{App: "app", Version: "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.Publish(ctx, "env-s", DeployRequest{App: "app", Version: "v2"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third request with two in flight at most: %v, want it held until the context ended", err)
	}
	if got := b.Stats().InFlight; got != 2 {
		t.Errorf("in flight %d, want 2", got)
	}
	if _, err := js.PublishMsg(t.Context(), resultFor(t, "env-s", "slots-0")); err != nil {
		t.Fatal(err)
	}
	// The result frees a place: the request held back goes out, with the
	// next index (the one that waited in vain took none).
	id, err := b.Publish(t.Context(), "env-s", DeployRequest{App: "app", Version: "v2"})
	if err != nil || id != "slots-2" {
		t.Fatalf("publish after a result: %q, %v", id, err)
	}
	if _, err := b.Publish(t.Context(), "env-s", DeployRequest{App: "app", Version: "v3"}); err == nil {
		t.Error("a fourth request in a batch of 3 was published")
	}
}

func TestBatchPublishErrors(t *testing.T) {
	t.Run("connection closed", func(t *testing.T) {
		url := startJetStream(t)
		nc, _ := connect(t, url)
		c, err := NewClient(nc)
		if err != nil {
			t.Fatal(err)
		}
		b := newBatchFor(t, c, BatchOptions{Size: 2})
		nc.Close()
		_, err = b.Publish(t.Context(), "env-e", DeployRequest{App: "app", Version: "v1"})
		if !errors.Is(err, ErrNotPublished) {
			t.Errorf("publish on a closed connection: %v", err)
		}
		if want := (BatchStats{PublishErrors: 1}); b.Stats() != want {
			t.Errorf("stats %+v, want %+v", b.Stats(), want)
		}
	})
	t.Run("refused by the stream", func(t *testing.T) {
		url := startJetStream(t)
		c := newClient(t, url)
		_, js := connect(t, url)
		b := newBatchFor(t, c, BatchOptions{Size: 2})
		if err := js.DeleteStream(t.Context(), StreamDeploy); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(t.Context(), "env-e", DeployRequest{App: "app", Version: "v1"}); err != nil {
			t.Fatalf("publish: %v (the refusal comes later)", err)
		}
		waitFor(t, "the refusal", b.Acked())
		// Nothing is waited for: the one request was refused.
		waitFor(t, "the end of a batch with nothing stored", b.Answered())
		if want := (BatchStats{PublishErrors: 1}); b.Stats() != want {
			t.Errorf("stats %+v, want %+v", b.Stats(), want)
		}
	})
	t.Run("bad request", func(t *testing.T) {
		url := startJetStream(t)
		b := newBatchFor(t, newClient(t, url), BatchOptions{Size: 2})
		if _, err := b.Publish(t.Context(), "not an env", DeployRequest{App: "app", Version: "v1"}); err == nil || errors.Is(err, ErrNotPublished) {
			t.Errorf("publish to an invalid environment ID: %v", err)
		}
		if want := (BatchStats{}); b.Stats() != want {
			t.Errorf("stats %+v, want %+v", b.Stats(), want)
		}
	})
}

func TestNewBatchWithoutDeployStream(t *testing.T) {
	s := startJetStream(t)
	_, js := connect(t, s)
	if err := js.DeleteStream(t.Context(), StreamDeploy); err != nil {
		t.Fatal(err)
	}
	_, err := newClient(t, s).NewBatch(t.Context(), BatchOptions{Size: 1})
	if err == nil {
		t.Fatal("a batch started without a DEPLOY stream")
	}
	for _, opts := range []BatchOptions{{}, {Size: -1}, {Size: 1, MaxInFlight: -1}} {
		if _, err := newClient(t, s).NewBatch(t.Context(), opts); err == nil {
			t.Errorf("NewBatch(%+v) took it", opts)
		}
	}
}

func TestPeekDeployResult(t *testing.T) {
	structured := resultFor(t, "env-p", "req-1")
	var fields map[string]any
	if err := json.Unmarshal(structured.Data, &fields); err != nil {
		t.Fatal(err)
	}
	delete(fields, "requestid")
	dataOnly, _ := json.Marshal(fields)

	e, err := Decode(structured.Header, structured.Data)
	if err != nil {
		t.Fatal(err)
	}
	binary := nats.Header{"ce-specversion": {"1.0"}, "ce-id": {e.ID()}, "ce-source": {e.Source()}, "ce-type": {e.Type()},
		"ce-time": {e.Time().Format(time.RFC3339Nano)}, "ce-subject": {e.Subject()},
		"ce-environment": {"env-p"}, "ce-requestid": {"req-1"}, "Content-Type": {"application/json"}}
	binaryBad := nats.Header{"ce-id": {"x"}, "ce-requestid": {"req-1"}}

	cases := []struct {
		name    string
		h       nats.Header
		body    []byte
		id      string
		outcome Outcome
		ok      bool
	}{
		{"structured", structured.Header, structured.Data, "req-1", Succeeded, true},
		{"structured, request id in the data alone", nil, dataOnly, "req-1", Succeeded, true},
		{"binary", binary, e.Data(), "req-1", Succeeded, true},
		{"binary, not a valid event", binaryBad, e.Data(), "", "", false},
		{"not JSON", nil, []byte("{"), "", "", false},
		{"no request id", nil, []byte(`{"data":{"outcome":"succeeded"}}`), "", "", false},
		{"empty", nil, nil, "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, outcome, ok := peekDeployResult(c.h, c.body)
			if id != c.id || outcome != c.outcome || ok != c.ok {
				t.Errorf("peekDeployResult: %q, %q, %t; want %q, %q, %t", id, outcome, ok, c.id, c.outcome, c.ok)
			}
		})
	}
}
