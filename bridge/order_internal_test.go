package bridge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

func TestOrderBookAcrossReplicas(t *testing.T) {
	kv := orderBucket(t)
	ctx := t.Context()
	now := time.Now()
	clock := func() time.Time { return now }
	a := newOrderBook(kv, "replica-a", 5*time.Second)
	b := newOrderBook(kv, "replica-b", 5*time.Second)
	a.now, b.now = clock, clock
	free := func(string) (func(), bool) { return func() {}, true }
	key := orderKey("env-1", "my.app")
	r := func(i int) ref {
		return ref{ID: fmt.Sprintf("r%d", i), Time: now.Add(time.Duration(i) * time.Second), Seq: uint64(i)}
	}

	ta, err := a.Begin(ctx, key, r(2))
	if err != nil || ta.verdict != proceed || ta.attempt != 1 {
		t.Fatalf("a.Begin(r2) = %+v, %v", ta, err)
	}
	// b finds a's lease, waits a little, and marks the key wanted.
	tb, err := b.Begin(ctx, key, r(3))
	if err != nil || tb.verdict != wait || tb.waitFor <= 0 || tb.waitFor > 2*b.linger {
		t.Fatalf("b.Begin(r3) while a holds the lease = %+v, %v", tb, err)
	}
	// a commits r2; seeing b's mark, it lets the lease go in that write.
	if err := a.Commit(ctx, ta); err != nil {
		t.Fatal(err)
	}
	tb, err = b.Begin(ctx, key, r(3))
	if err != nil || tb.verdict != proceed {
		t.Fatalf("b.Begin(r3) after a's commit = %+v, %v", tb, err)
	}
	// r1 is older than r2: superseded, on either replica.
	if tk, _ := a.Begin(ctx, key, r(1)); tk.verdict != superseded || tk.winner != "r2" {
		t.Fatalf("a.Begin(r1) = %+v", tk)
	}
	if err := b.Commit(ctx, tb); err != nil {
		t.Fatal(err)
	}
	// b keeps the lease: its next request of the key needs no write.
	rev := mustRevision(t, kv, key)
	t4, err := b.Begin(ctx, key, r(4))
	if err != nil || t4.verdict != proceed {
		t.Fatalf("b.Begin(r4) = %+v, %v", t4, err)
	}
	if got := mustRevision(t, kv, key); got != rev {
		t.Fatalf("revision %d -> %d: a kept lease was taken again", rev, got)
	}
	// The call fails: the try is counted and the lease kept.
	if err := b.Release(ctx, t4); err != nil {
		t.Fatal(err)
	}
	if t4, _ = b.Begin(ctx, key, r(4)); t4.verdict != proceed || t4.attempt != 2 {
		t.Fatalf("b.Begin(r4) again = %+v", t4)
	}
	if err := b.Commit(ctx, t4); err != nil {
		t.Fatal(err)
	}
	// Idle past the linger, b lets the lease go; then a may take it.
	if tk, _ := a.Begin(ctx, key, r(5)); tk.verdict != wait {
		t.Fatalf("a.Begin(r5) while b keeps the lease = %+v", tk)
	}
	now = now.Add(b.linger)
	b.sweep(ctx, false, free)
	t5, err := a.Begin(ctx, key, r(5))
	if err != nil || t5.verdict != proceed {
		t.Fatalf("a.Begin(r5) after b's linger = %+v, %v", t5, err)
	}
	if err := a.Commit(ctx, t5); err != nil {
		t.Fatal(err)
	}
	// Replays are recognised and older requests superseded, on either replica.
	for _, ob := range []*orderBook{a, b} {
		if tk, _ := ob.Begin(ctx, key, r(5)); tk.verdict != alreadyApplied {
			t.Fatalf("%s: replay of r5 = %+v", ob.owner, tk)
		}
		if tk, _ := ob.Begin(ctx, key, r(4)); tk.verdict != superseded || tk.winner != "r5" {
			t.Fatalf("%s: r4 after r5 = %+v", ob.owner, tk)
		}
	}
	// At shutdown every kept lease goes.
	a.sweep(ctx, true, free)
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value()), `"lease"`) {
		t.Fatalf("lease left after shutdown: %s", e.Value())
	}
}

func TestOrderLeaseOfACrashedReplicaExpires(t *testing.T) {
	kv := orderBucket(t)
	ctx := t.Context()
	now := time.Now()
	dead := newOrderBook(kv, "dead", time.Second)
	live := newOrderBook(kv, "live", time.Second)
	dead.now = func() time.Time { return now }
	live.now = func() time.Time { return now }
	key := orderKey("env-1", "app")
	r := ref{ID: "r", Time: now, Seq: 1}
	if tk, err := dead.Begin(ctx, key, r); err != nil || tk.verdict != proceed {
		t.Fatalf("dead.Begin = %+v, %v", tk, err)
	}
	// The replica dies holding the lease; its redelivery waits it out.
	if tk, _ := live.Begin(ctx, key, r); tk.verdict != wait {
		t.Fatalf("live.Begin during the lease = %+v", tk)
	}
	live.now = func() time.Time { return now.Add(6 * time.Second) }
	tk, err := live.Begin(ctx, key, r)
	if err != nil || tk.verdict != proceed || tk.attempt != 2 {
		t.Fatalf("live.Begin after expiry = %+v, %v", tk, err)
	}
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

// BenchmarkOrderStep is the order step of one request (Begin, then Commit)
// against a real key-value bucket: "steady" for a key whose requests keep
// coming (the lease is kept: one write), "lone" for a key seen once (lease,
// then commit: two writes).
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
				t, err := ob.Begin(b.Context(), key, ref{ID: fmt.Sprint(i), Time: base.Add(time.Duration(i)), Seq: uint64(i)})
				if err != nil || t.verdict != proceed {
					b.Fatalf("Begin = %+v, %v", t, err)
				}
				if err := ob.Commit(b.Context(), t); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestOrderKeptLeaseIsRenewedBeforeACallItCannotCover(t *testing.T) {
	kv := orderBucket(t)
	ctx := t.Context()
	now := time.Now()
	ob := newOrderBook(kv, "a", 4*time.Second) // lease 9 s
	ob.now = func() time.Time { return now }
	key := orderKey("env-1", "app")
	t1, err := ob.Begin(ctx, key, ref{ID: "r1", Time: now, Seq: 1})
	if err != nil || t1.verdict != proceed {
		t.Fatalf("Begin(r1) = %+v, %v", t1, err)
	}
	if err := ob.Commit(ctx, t1); err != nil {
		t.Fatal(err)
	}
	// 4 s later the kept lease has 5 s left: less than a call and its margin.
	now = now.Add(4 * time.Second)
	rev := mustRevision(t, kv, key)
	t2, err := ob.Begin(ctx, key, ref{ID: "r2", Time: now, Seq: 2})
	if err != nil || t2.verdict != proceed {
		t.Fatalf("Begin(r2) = %+v, %v", t2, err)
	}
	if mustRevision(t, kv, key) == rev {
		t.Fatal("a lease too short for the call was used without renewing it")
	}
	if got := t2.state.Lease.Expires; !got.Equal(now.Add(9 * time.Second)) {
		t.Fatalf("renewed lease expires %v, want %v", got, now.Add(9*time.Second))
	}
}
