package bridge

import (
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
	a := newOrderBook(kv, "replica-a", 10*time.Second)
	b := newOrderBook(kv, "replica-b", 10*time.Second)
	a.now, b.now = clock, clock
	key := orderKey("env-1", "my.app")
	r1 := ref{ID: "r1", Time: now.Add(-3 * time.Second), Seq: 1}
	r2 := ref{ID: "r2", Time: now.Add(-2 * time.Second), Seq: 2}
	r3 := ref{ID: "r3", Time: now.Add(-1 * time.Second), Seq: 3}

	ta, err := a.Begin(ctx, key, r2)
	if err != nil || ta.verdict != proceed || ta.attempt != 1 {
		t.Fatalf("a.Begin(r2) = %+v, %v", ta, err)
	}
	// b sees a's lease and waits, however stale its cache.
	tb, err := b.Begin(ctx, key, r3)
	if err != nil || tb.verdict != wait || tb.waitFor <= 0 {
		t.Fatalf("b.Begin(r3) while a holds the lease = %+v, %v", tb, err)
	}
	// a commits r2 and keeps the lease for a queued local request.
	if err := a.Commit(ctx, ta, true); err != nil {
		t.Fatal(err)
	}
	if tb, _ := b.Begin(ctx, key, r3); tb.verdict != wait {
		t.Fatalf("b.Begin(r3) while a keeps the lease = %+v", tb)
	}
	// The older r1 is superseded by r2 and needs no write.
	rev := mustRevision(t, kv, key)
	t1, err := a.Begin(ctx, key, r1)
	if err != nil || t1.verdict != superseded || t1.winner != "r2" {
		t.Fatalf("a.Begin(r1) = %+v, %v", t1, err)
	}
	// r3 proceeds under the kept lease without a write.
	t3, err := a.Begin(ctx, key, r3)
	if err != nil || t3.verdict != proceed {
		t.Fatalf("a.Begin(r3) = %+v, %v", t3, err)
	}
	if got := mustRevision(t, kv, key); got != rev {
		t.Fatalf("revision %d -> %d: a handed-over lease was written again", rev, got)
	}
	// A failed call gives the lease back and counts the try.
	if err := a.Release(ctx, t3, false); err != nil {
		t.Fatal(err)
	}
	t3b, err := b.Begin(ctx, key, r3)
	if err != nil || t3b.verdict != proceed || t3b.attempt != 2 {
		t.Fatalf("b.Begin(r3) after a released = %+v, %v", t3b, err)
	}
	if err := b.Commit(ctx, t3b, false); err != nil {
		t.Fatal(err)
	}
	// Replays of r3, on either replica, are already applied; r2 is superseded.
	for _, ob := range []*orderBook{a, b} {
		if tk, _ := ob.Begin(ctx, key, r3); tk.verdict != alreadyApplied {
			t.Fatalf("%s: replay of r3 = %+v", ob.owner, tk)
		}
		if tk, _ := ob.Begin(ctx, key, r2); tk.verdict != superseded || tk.winner != "r3" {
			t.Fatalf("%s: r2 after r3 = %+v", ob.owner, tk)
		}
	}
}

func TestOrderLeaseOfACrashedReplicaExpires(t *testing.T) {
	kv := orderBucket(t)
	ctx := t.Context()
	now := time.Now()
	dead := newOrderBook(kv, "dead", 5*time.Second)
	live := newOrderBook(kv, "live", 5*time.Second)
	dead.now = func() time.Time { return now }
	live.now = func() time.Time { return now }
	key := orderKey("env-1", "app")
	r := ref{ID: "r", Time: now, Seq: 1}
	if tk, err := dead.Begin(ctx, key, r); err != nil || tk.verdict != proceed {
		t.Fatalf("dead.Begin = %+v, %v", tk, err)
	}
	// The replica dies holding the lease; its redelivery waits it out.
	if tk, _ := live.Begin(ctx, key, r); tk.verdict != wait || tk.waitFor > 5*time.Second {
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
