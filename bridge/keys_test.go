package bridge

import "testing"

func TestKeyQueues(t *testing.T) {
	k := newKeyQueues(2, 3)
	j := func() *deployJob { return &deployJob{} }
	if got := k.enter("a", j()); got != owns {
		t.Fatalf("first request of an idle key: %v, want owns", got)
	}
	// Another key is free meanwhile: it never waits behind a.
	if got := k.enter("b", j()); got != owns {
		t.Fatalf("first request of another key: %v, want owns", got)
	}
	a1, a2 := j(), j()
	if k.enter("a", a1) != queued || k.enter("a", a2) != queued {
		t.Fatal("requests of a busy key did not queue")
	}
	if got := k.enter("a", j()); got != full {
		t.Fatalf("third waiting request of a key bounded at 2: %v, want full", got)
	}
	if k.enter("b", j()) != queued {
		t.Fatal("b's queue is not a's")
	}
	if got := k.enter("c", j()); got != owns {
		t.Fatalf("an idle key when queues are full: %v, want owns", got)
	}
	if got := k.enter("c", j()); got != full {
		t.Fatalf("a fourth waiting request with all queues bounded at 3: %v, want full", got)
	}
	if k.tryOwn("a") {
		t.Fatal("tryOwn took a busy key")
	}
	// The owner runs its queue in order, then the key is free.
	if k.next("a") != a1 || k.next("a") != a2 || k.next("a") != nil {
		t.Fatal("a's queue did not come back in order")
	}
	if !k.tryOwn("a") {
		t.Fatal("tryOwn could not take an idle key")
	}
	if k.enter("a", a1) != queued {
		t.Fatal("a request did not queue behind tryOwn")
	}
	if k.next("a") != a1 {
		t.Fatal("the request that queued behind tryOwn was not handed over")
	}
	if got := k.Waiting(); got != 1 {
		t.Fatalf("Waiting() = %d, want 1 (b's)", got)
	}
}
