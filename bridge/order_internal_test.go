package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed"
)

func orderBucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	s, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), OrderBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// clock is a settable fake clock for one replica.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func books(t *testing.T, call time.Duration, names ...string) ([]*orderBook, []*clock, jetstream.KeyValue) {
	kv := orderBucket(t)
	var obs []*orderBook
	var clocks []*clock
	for i, n := range names {
		// Each replica's clock reads something else: an hour apart.
		c := &clock{t: time.Date(2026, 1, 1, i, 0, 0, 0, time.UTC)}
		ob := newOrderBook(kv, n, call)
		ob.now = c.now
		obs, clocks = append(obs, ob), append(clocks, c)
	}
	return obs, clocks, kv
}

func refAt(i int) ref {
	return ref{ID: fmt.Sprintf("r%d", i), Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Seq: uint64(i)}
}

func begin(t *testing.T, o *orderBook, key string, r ref) ticket {
	t.Helper()
	tk, err := o.Begin(t.Context(), key, r, false)
	if err != nil {
		t.Fatalf("%s: Begin(%s): %v", o.owner, r.ID, err)
	}
	return tk
}

// A replica judges another's lease by how long it has itself seen it
// unchanged, never by comparing clocks: here the two clocks read an hour
// apart, and the lease still holds for exactly its length plus the drift
// allowance, on the waiting replica's clock.
func TestOrderLeaseDoesNotDependOnClocksAgreeing(t *testing.T) {
	obs, clocks, _ := books(t, 2*time.Second, "a", "b")
	a, b := obs[0], obs[1]
	key := orderKey("env-1", "app")
	if tk := begin(t, a, key, refAt(1)); tk.verdict != proceed || tk.fence != 1 {
		t.Fatalf("a.Begin(r1) = %+v", tk)
	}
	// a pauses (or dies) holding the lease. b waits, whatever its clock says.
	tb := begin(t, b, key, refAt(2))
	if tb.verdict != wait || tb.waitFor <= 0 {
		t.Fatalf("b.Begin(r2) while a holds the lease = %+v", tb)
	}
	must := observeFor(a.leaseTTL)
	clocks[1].advance(must - time.Millisecond)
	if tb = begin(t, b, key, refAt(2)); tb.verdict != wait {
		t.Fatalf("b.Begin(r2) %v after first seeing a's lease (it lasts %v) = %+v", must-time.Millisecond, must, tb)
	}
	clocks[1].advance(time.Millisecond)
	tb = begin(t, b, key, refAt(2))
	if tb.verdict != proceed || tb.fence != 2 {
		t.Fatalf("b.Begin(r2) after the lease = %+v", tb)
	}
	// a wakes up: its lease ended on its own clock before b took over.
	clocks[0].advance(a.leaseTTL - leaseGuard)
	if left := a.Left(tk1(t, a, key)); left > 0 {
		t.Fatalf("a's lease has %v left after its length", left)
	}
}

// tk1 is a's ticket for r1 as Begin handed it (recomputed from a's memory).
func tk1(t *testing.T, a *orderBook, key string) ticket {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.mine[key]
	return ticket{key: key, deadline: h.takenAt.Add(a.leaseTTL - leaseGuard)}
}

// The holder counts its lease from before the write that took it, and the
// operator call's deadline ends inside it.
func TestOrderCallDeadlineInsideTheLease(t *testing.T) {
	obs, clocks, _ := books(t, 3*time.Second, "a")
	a := obs[0]
	key := orderKey("env-1", "app")
	start := clocks[0].t
	tk := begin(t, a, key, refAt(1))
	if want := start.Add(a.leaseTTL - leaseGuard); !tk.deadline.Equal(want) {
		t.Fatalf("deadline %v, want %v (lease from before the write, less the guard)", tk.deadline, want)
	}
	if left := a.Left(tk); left < a.call {
		t.Fatalf("a fresh lease leaves %v for a call of %v", left, a.call)
	}
	// A write that took most of the lease leaves too little for a call.
	clocks[0].advance(a.leaseTTL - leaseGuard - minCall/2)
	if left := a.Left(tk); left >= minCall {
		t.Fatalf("after a slow write %v is left", left)
	}
}

// Fences grow strictly per key across replicas; a retry of the request last
// sent repeats its fence.
func TestOrderFencesGrow(t *testing.T) {
	obs, clocks, _ := books(t, time.Second, "a", "b")
	a, b := obs[0], obs[1]
	key := orderKey("env-1", "app")
	t1 := begin(t, a, key, refAt(1))
	a.Done(t1, outcomeApplied)
	t2 := begin(t, a, key, refAt(2))
	a.Done(t2, outcomeUnknown) // a 5xx: it may have been applied
	t2b := begin(t, a, key, refAt(2))
	if t2b.verdict != proceed || t2b.fence != t2.fence || t2b.attempt != 2 {
		t.Fatalf("retry of r2 = %+v, want fence %d attempt 2", t2b, t2.fence)
	}
	a.Done(t2b, outcomeApplied)
	a.free(t.Context(), key)
	t3 := begin(t, b, key, refAt(3))
	if !(t1.fence < t2.fence && t2.fence < t3.fence) || t3.verdict != proceed {
		t.Fatalf("fences %d, %d, %d (r3 %+v): not strictly growing", t1.fence, t2.fence, t3.fence, t3)
	}
	_ = clocks
}

// A request sent to the operator holds back every older one, even when its
// answer was never recorded (the replica died after the call, or its write
// of the outcome failed).
func TestOrderSentRequestHoldsBackOlderOnes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outcome *sendOutcome // nil: the replica died before the call's answer
	}{
		{"died during the call", nil},
		{"applied, outcome never written", ptr(outcomeApplied)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs, clocks, _ := books(t, time.Second, "a", "b")
			a, b := obs[0], obs[1]
			key := orderKey("env-1", "app")
			t2 := begin(t, a, key, refAt(2))
			if tc.outcome != nil {
				a.Done(t2, *tc.outcome) // and then a dies: nothing more is written
			}
			// r1 is older than r2, which may have been applied: superseded
			// at once, lease or not.
			tb := begin(t, b, key, refAt(1))
			if tb.verdict != superseded || tb.winner != "r2" || tb.winnerApplied {
				t.Fatalf("r1 after r2 was sent = %+v, want superseded by r2 (sent, not known applied)", tb)
			}
			// r2's redelivery waits out a's lease, then goes again.
			if tr := begin(t, b, key, refAt(2)); tr.verdict != wait {
				t.Fatalf("r2 again during a's lease = %+v", tr)
			}
			clocks[1].advance(observeFor(a.leaseTTL))
			tb = begin(t, b, key, refAt(1))
			if tb.verdict != superseded || tb.winner != "r2" || tb.winnerApplied {
				t.Fatalf("r1 after r2 was sent = %+v, want superseded by r2 (sent, not known applied)", tb)
			}
			// r2's redelivery is sent again with its own fence.
			tr := begin(t, b, key, refAt(2))
			if tr.verdict != proceed || tr.fence != t2.fence || tr.attempt != 2 {
				t.Fatalf("r2 again = %+v, want fence %d attempt 2", tr, t2.fence)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// A copy of a request that comes after newer ones were applied learns what
// happened to it: applied before, or sent with no answer recorded.
func TestOrderLateCopyIsToldTheTruth(t *testing.T) {
	obs, _, _ := books(t, time.Second, "a")
	a := obs[0]
	key := orderKey("env-1", "app")
	t1 := begin(t, a, key, refAt(1))
	a.Done(t1, outcomeApplied)
	t2 := begin(t, a, key, refAt(2))
	a.Done(t2, outcomeUnknown)
	t3 := begin(t, a, key, refAt(3)) // overtakes r2, whose answer is unknown
	a.Done(t3, outcomeApplied)
	a.free(t.Context(), key)

	if tk := begin(t, a, key, refAt(1)); tk.verdict != alreadyApplied || !tk.sentBefore || tk.winner != "r3" {
		t.Fatalf("late r1 = %+v, want applied before, r3 since", tk)
	}
	if tk := begin(t, a, key, refAt(2)); tk.verdict != superseded || !tk.sentBefore || tk.winner != "r3" || !tk.winnerApplied {
		t.Fatalf("late r2 = %+v, want sent before, superseded by applied r3", tk)
	}
	if tk := begin(t, a, key, refAt(3)); tk.verdict != alreadyApplied || tk.sentBefore {
		t.Fatalf("replay of r3 = %+v, want already applied", tk)
	}
	// A request older than r3 that was never sent is superseded, not sent.
	r := refAt(0)
	r.ID = "r0"
	if tk := begin(t, a, key, r); tk.verdict != superseded || tk.sentBefore {
		t.Fatalf("never sent r0 = %+v", tk)
	}
}

// Order state that cannot be read stops its key with an error instead of
// being read as empty (which would forget what was applied).
func TestOrderUnreadableStateIsAnError(t *testing.T) {
	obs, _, kv := books(t, time.Second, "a")
	key := orderKey("env-1", "app")
	if _, err := kv.Put(t.Context(), key, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	_, err := obs[0].Begin(t.Context(), key, refAt(1), false)
	if !errors.Is(err, ErrOrderState) {
		t.Fatalf("Begin over garbage = %v, want ErrOrderState", err)
	}
}

// A steady stream of one key's requests costs one write each; the lease is
// freed after the linger with the last outcome written.
func TestOrderSteadyStreamOneWriteEach(t *testing.T) {
	obs, clocks, kv := books(t, time.Second, "a")
	a := obs[0]
	key := orderKey("env-1", "app")
	busy := func(string) (func(), bool) { return nil, false }
	free := func(string) (func(), bool) { return func() {}, true }
	var rev uint64
	for i := 1; i <= 5; i++ {
		tk := begin(t, a, key, refAt(i))
		if tk.verdict != proceed {
			t.Fatalf("Begin(r%d) = %+v", i, tk)
		}
		got := mustRevision(t, kv, key)
		if i > 1 && got != rev+1 {
			t.Fatalf("r%d took %d writes", i, got-rev)
		}
		rev = got
		a.Done(tk, outcomeApplied)
		a.sweep(t.Context(), false, free) // within the linger: kept
	}
	clocks[0].advance(a.linger)
	a.sweep(t.Context(), false, busy) // in use: left alone
	if mustRevision(t, kv, key) != rev {
		t.Fatal("a key in use was freed")
	}
	a.sweep(t.Context(), false, free)
	e, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	var st orderState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Lease != nil || st.Sent != nil || st.Applied == nil || st.Applied.ID != "r5" {
		t.Fatalf("after the linger: %s", e.Value())
	}
}

// A replica that finds the lease held asks for it; the holder lets it go at
// its next request of the key, and the asker gets its turn.
func TestOrderWantedLeaseChangesHands(t *testing.T) {
	obs, clocks, _ := books(t, time.Second, "a", "b")
	a, b := obs[0], obs[1]
	key := orderKey("env-1", "app")
	t1 := begin(t, a, key, refAt(1))
	a.Done(t1, outcomeApplied)
	if tb := begin(t, b, key, refAt(2)); tb.verdict != wait {
		t.Fatalf("b while a keeps the lease = %+v", tb)
	}
	if ta := begin(t, a, key, refAt(3)); ta.verdict != wait {
		t.Fatalf("a's next request while b asked = %+v, want wait", ta)
	}
	tb := begin(t, b, key, refAt(2))
	if tb.verdict != proceed {
		t.Fatalf("b after a let go = %+v", tb)
	}
	b.Done(tb, outcomeApplied)
	b.free(t.Context(), key)
	// A request that nobody takes up any more does not hold the key forever.
	if ta := begin(t, a, key, refAt(3)); ta.verdict != proceed {
		t.Fatalf("a after b let go = %+v", ta)
	}
	_ = clocks
}

func mustRevision(t *testing.T, kv jetstream.KeyValue, key string) uint64 {
	t.Helper()
	e, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return e.Revision()
}

func TestOrderKeyEscapesDots(t *testing.T) {
	if got := orderKey("env-1", "a.b."); got != "env-1.a=2Eb=2E" {
		t.Fatalf("orderKey = %q", got)
	}
}

// BenchmarkOrderStep is the order step of one request (Begin, then Done)
// against a real key-value bucket: "steady" for a key whose requests keep
// coming (one write each: the lease, the sent mark and the last request's
// outcome together), "lone" for a key seen once (Begin, then the write that
// frees its lease: two writes).
func BenchmarkOrderStep(b *testing.B) {
	s, err := natsembed.Start(natsembed.Config{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(b.Context(), OrderBucketConfig())
	if err != nil {
		b.Fatal(err)
	}
	ob := newOrderBook(kv, "bench", 10*time.Second)
	base := time.Now()
	for _, mode := range []string{"steady", "lone"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				key := orderKey("env-1", "app")
				if mode == "lone" {
					key = orderKey("env-1", fmt.Sprintf("%s-%d", mode, i))
				}
				t, err := ob.Begin(b.Context(), key, ref{ID: fmt.Sprint(i), Time: base.Add(time.Duration(i)), Seq: uint64(i)}, false)
				if err != nil || t.verdict != proceed {
					b.Fatalf("Begin = %+v, %v", t, err)
				}
				ob.Done(t, outcomeApplied)
				if mode == "lone" {
					ob.free(b.Context(), key)
				}
			}
		})
	}
}

// Idle keys' order state is bounded by a TTL that still covers every request
// the DEPLOY stream can replay.
func TestOrderStateOutlivesTheDeployStream(t *testing.T) {
	cfg := OrderBucketConfig()
	for _, sc := range events.StreamConfigs() {
		if sc.Name == events.StreamDeploy && (cfg.TTL == 0 || cfg.TTL <= sc.MaxAge) {
			t.Fatalf("order state TTL %v does not outlast DEPLOY's max age %v", cfg.TTL, sc.MaxAge)
		}
	}
}

// A first delivery that finds the key held by a replica taking forwarded
// requests is handed to it; a redelivery (mayForward false) waits instead.
func TestOrderHandsHeldKeysToTheirHolder(t *testing.T) {
	obs, _, _ := books(t, time.Second, "a", "b")
	a, b := obs[0], obs[1]
	a.forward = "operator-bridge.forward.a"
	key := orderKey("env-1", "app")
	t1 := begin(t, a, key, refAt(1))
	a.Done(t1, outcomeApplied)
	tk, err := b.Begin(t.Context(), key, refAt(2), true)
	if err != nil || tk.verdict != elsewhere || tk.holder != a.forward {
		t.Fatalf("b.Begin(r2, mayForward) while a holds the key = %+v, %v", tk, err)
	}
	if tk := begin(t, b, key, refAt(2)); tk.verdict != wait {
		t.Fatalf("b.Begin(r2) without forwarding = %+v, want wait", tk)
	}
	// The holder runs what it is handed.
	if tk, err := a.Begin(t.Context(), key, refAt(2), false); err != nil || tk.verdict != wait {
		// b asked for the key above, so a lets it go first.
		t.Fatalf("a.Begin(r2) after b asked = %+v, %v", tk, err)
	}
}
