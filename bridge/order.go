package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The order step keeps contract §3 across replicas and restarts. Its state is
// one key per environment and app in the key-value bucket OrderBucket:
//
//	{"applied": {id, time, seq}, "lease": {id, time, seq, owner, expires}, "tries": {id, n}}
//
// Begin reads the key (from a local cache whose staleness a failed
// compare-and-set reveals), decides, and takes the lease with one
// compare-and-set write; Commit records the applied request and drops the
// lease with a second. A replica that loses a race re-reads and decides again.
// In the common case a request costs two key-value writes; the local cache
// saves the read. When more requests of the same key are queued in this
// replica, Commit hands the lease to the next one instead of freeing it, so a
// burst of one key costs one write per request plus one.

// ref identifies a request in the order of its key: CloudEvent time (or
// stored time), then stream sequence.
type ref struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Seq  uint64    `json:"seq"`
}

// before reports whether r comes before o in the key's order.
func (r ref) before(o ref) bool {
	if !r.Time.Equal(o.Time) {
		return r.Time.Before(o.Time)
	}
	return r.Seq < o.Seq
}

type lease struct {
	ref
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

type tries struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}

type orderState struct {
	Applied *ref   `json:"applied,omitempty"`
	Lease   *lease `json:"lease,omitempty"`
	Tries   *tries `json:"tries,omitempty"`
}

// verdict is what the order step says about a request.
type verdict int

const (
	proceed        verdict = iota // lease taken: call the operator
	alreadyApplied                // this id is the one applied last
	superseded                    // a newer request was applied
	wait                          // another delivery holds the lease
)

// ticket is what Begin hands to Commit or Release.
type ticket struct {
	key     string
	rev     uint64
	state   orderState
	verdict verdict
	// winner is the applied request's id, for alreadyApplied and superseded.
	winner string
	// attempt counts the operator calls for this request id, this one included.
	attempt int
	// waitFor is how long the current lease still runs, for wait.
	waitFor time.Duration
}

// orderBook is the order step over a key-value bucket.
type orderBook struct {
	kv       jetstream.KeyValue
	owner    string        // this replica, unique per process
	leaseTTL time.Duration // longer than one operator call
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	rev   uint64
	state orderState
}

// maxCached bounds the local cache; past it the cache starts afresh (it is
// only a read saver: a stale entry costs one failed compare-and-set).
const maxCached = 100_000

func newOrderBook(kv jetstream.KeyValue, owner string, leaseTTL time.Duration) *orderBook {
	return &orderBook{kv: kv, owner: owner, leaseTTL: leaseTTL, now: time.Now, cache: make(map[string]cached)}
}

// orderKey is the bucket key of an environment and app. Apps may hold dots,
// which the bucket reads as token separators, so they are escaped with '='
// (a character neither IDs nor apps may contain).
func orderKey(env, app string) string {
	return env + "." + strings.ReplaceAll(app, ".", "=2E")
}

func (o *orderBook) load(ctx context.Context, key string, fresh bool) (cached, error) {
	if !fresh {
		o.mu.Lock()
		c, ok := o.cache[key]
		o.mu.Unlock()
		if ok {
			return c, nil
		}
	}
	e, err := o.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return cached{}, nil
	}
	if err != nil {
		return cached{}, fmt.Errorf("order state %s: %w", key, err)
	}
	var st orderState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// A value we cannot read is replaced by the next write; treat it as empty.
		st = orderState{}
	}
	c := cached{rev: e.Revision(), state: st}
	o.remember(key, c)
	return c, nil
}

func (o *orderBook) remember(key string, c cached) {
	o.mu.Lock()
	if len(o.cache) >= maxCached {
		clear(o.cache)
	}
	o.cache[key] = c
	o.mu.Unlock()
}

func (o *orderBook) forget(key string) {
	o.mu.Lock()
	delete(o.cache, key)
	o.mu.Unlock()
}

// write stores st under key if the key is still at rev (0: absent).
func (o *orderBook) write(ctx context.Context, key string, rev uint64, st orderState) (uint64, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	var next uint64
	if rev == 0 {
		next, err = o.kv.Create(ctx, key, data)
	} else {
		next, err = o.kv.Update(ctx, key, data, rev)
	}
	if err != nil {
		o.forget(key)
		return 0, err
	}
	o.remember(key, cached{rev: next, state: st})
	return next, nil
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.Is(err, jetstream.ErrKeyDeleted)
}

// maxRaces bounds how often Begin re-reads after losing a compare-and-set.
const maxRaces = 16

// held reports whether this replica holds the lease of st with time to spare
// for one more operator call. While it does, no other replica writes the
// key, so the cached state is the truth and a request may proceed without
// a write of its own: the lease was handed over by the request before it.
func (o *orderBook) held(st orderState, now time.Time) bool {
	l := st.Lease
	return l != nil && l.Owner == o.owner && now.Add(o.leaseTTL/2).Before(l.Expires)
}

// Begin decides what to do with request r of key and, when it may proceed,
// takes the key's lease (or keeps the one this replica holds).
func (o *orderBook) Begin(ctx context.Context, key string, r ref) (ticket, error) {
	fresh := false
	for range maxRaces {
		c, err := o.load(ctx, key, fresh)
		if err != nil {
			return ticket{}, err
		}
		st := c.state
		t := ticket{key: key, rev: c.rev, state: st}
		now := o.now()
		held := o.held(st, now)
		// The applied request only moves forward, so these two verdicts
		// hold even when the cache is behind.
		if a := st.Applied; a != nil {
			if a.ID == r.ID {
				t.verdict, t.winner = alreadyApplied, a.ID
				return t, nil
			}
			if r.before(*a) {
				t.verdict, t.winner = superseded, a.ID
				return t, nil
			}
		}
		if l := st.Lease; l != nil && l.Owner != o.owner && now.Before(l.Expires) {
			if !fresh {
				// The cache may be behind: make sure before waiting.
				fresh = true
				continue
			}
			t.verdict, t.waitFor = wait, l.Expires.Sub(now)
			return t, nil
		}
		next := st
		next.Lease = &lease{ref: r, Owner: o.owner, Expires: now.Add(o.leaseTTL)}
		t.attempt = 1
		if st.Tries != nil && st.Tries.ID == r.ID {
			t.attempt = st.Tries.N + 1
		}
		next.Tries = &tries{ID: r.ID, N: t.attempt}
		if held {
			// Handed over: the lease is ours already; the new ref and try
			// count travel in the ticket and land with the next write.
			next.Lease.Expires = st.Lease.Expires
			t.state, t.verdict = next, proceed
			return t, nil
		}
		rev, err := o.write(ctx, key, c.rev, next)
		if isConflict(err) {
			fresh = true
			continue
		}
		if err != nil {
			return ticket{}, fmt.Errorf("order lease %s: %w", key, err)
		}
		t.rev, t.state, t.verdict = rev, next, proceed
		return t, nil
	}
	return ticket{}, fmt.Errorf("order lease %s: lost %d races in a row", key, maxRaces)
}

// leaseAfter is the lease a write leaves behind: kept (renewed) for the next
// local request of the key when keep is true, dropped otherwise.
func (o *orderBook) leaseAfter(keep bool) *lease {
	if !keep {
		return nil
	}
	return &lease{Owner: o.owner, Expires: o.now().Add(o.leaseTTL)}
}

// Commit records that the ticket's request was applied. The lease is handed
// to the next local request of the key when keep is true, and freed
// otherwise. If the lease was lost meanwhile (it expired and another replica
// wrote), the applied request is still recorded unless a newer one already
// is.
func (o *orderBook) Commit(ctx context.Context, t ticket, keep bool) error {
	r := t.state.Lease.ref
	rev, st := t.rev, t.state
	for range maxRaces {
		next := st
		if next.Applied == nil || next.Applied.before(r) {
			next.Applied = &r
		}
		if next.Lease == nil || next.Lease.Owner == o.owner {
			next.Lease = o.leaseAfter(keep)
		}
		next.Tries = nil
		_, err := o.write(ctx, t.key, rev, next)
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("order commit %s: %w", t.key, err)
		}
		c, err := o.load(ctx, t.key, true)
		if err != nil {
			return err
		}
		rev, st = c.rev, c.state
	}
	return fmt.Errorf("order commit %s: lost %d races in a row", t.key, maxRaces)
}

// Release ends a ticket without applying its request: after a failed call
// (keeping its count of tries), or after a verdict that needed no call while
// this replica held the lease. The lease is kept for the next local request
// when keep is true. A lease already lost is left alone.
func (o *orderBook) Release(ctx context.Context, t ticket, keep bool) error {
	if t.verdict != proceed && !o.held(t.state, o.now()) {
		return nil // nothing of ours to give back
	}
	next := t.state
	next.Lease = o.leaseAfter(keep)
	if keep && t.verdict != proceed && t.state.Lease != nil {
		return nil // still ours, still valid: hand it over as it is
	}
	_, err := o.write(ctx, t.key, t.rev, next)
	if err != nil && !isConflict(err) {
		return fmt.Errorf("order release %s: %w", t.key, err)
	}
	return nil
}

// keyLocks serialises the requests of one key inside this process, so that
// local requests queue here instead of racing for the lease in the bucket.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one token while locked; size 1 is the lock itself
	refs int
}

func newKeyLocks() *keyLocks { return &keyLocks{locks: make(map[string]*keyLock)} }

// Waiting reports how many other local requests of key are queued behind
// the one holding its lock.
func (k *keyLocks) Waiting(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.locks[key]; ok {
		return l.refs - 1
	}
	return 0
}

// Lock waits for key's lock or ctx; it returns the unlock function.
func (k *keyLocks) Lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	l, ok := k.locks[key]
	if !ok {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()

	release := func() {
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
