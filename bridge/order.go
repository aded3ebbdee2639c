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

// The order step keeps docs/contract.md's order rules across replicas and restarts. Its state is
// one key per environment and app in the key-value bucket OrderBucket:
//
//	{"applied": {id, time, seq}, "lease": {owner, expires, ...}, "tries": {id, n}, "wanted": {owner, until}}
//
// A replica calls an operator for a key only while it holds the key's lease,
// taken and renewed with compare-and-set writes, so two replicas never apply
// the same key at once; "applied" only moves forward, so an older request is
// superseded and a replayed one is recognised.
//
// Writes are the cost, so a replica keeps a key's lease after applying a
// request (Commit renews it in the same write that records the request) and
// lets it go only once the key has been idle for a short linger. A steady
// stream of one key's requests then costs one write each; a lone request
// costs two (lease, then commit). Another replica that finds the lease held
// marks the key wanted; the holder then lets the lease go at its next write,
// and stops taking it anew while the mark lasts, so no replica starves.
// The local cache saves reads: a stale entry only costs a failed
// compare-and-set and a read.

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
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

type tries struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}

// want marks a key as wanted by a replica that found its lease held.
type want struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

type orderState struct {
	Applied *ref   `json:"applied,omitempty"`
	Lease   *lease `json:"lease,omitempty"`
	Tries   *tries `json:"tries,omitempty"`
	Wanted  *want  `json:"wanted,omitempty"`
}

// verdict is what the order step says about a request.
type verdict int

const (
	proceed        verdict = iota // lease held: call the operator
	alreadyApplied                // this id is the one applied last
	superseded                    // a newer request was applied
	wait                          // another replica holds or wants the lease
)

// ticket is what Begin hands to Commit or Release.
type ticket struct {
	key     string
	req     ref
	rev     uint64
	state   orderState
	verdict verdict
	// winner is the applied request's id, for alreadyApplied and superseded.
	winner string
	// attempt counts the operator calls for this request id, this one included.
	attempt int
	// waitFor is how long to wait before trying again, for wait.
	waitFor time.Duration
}

// orderBook is the order step over a key-value bucket.
type orderBook struct {
	kv       jetstream.KeyValue
	owner    string        // this replica, unique per process
	call     time.Duration // the longest an operator call may take
	leaseTTL time.Duration // one call and the writes around it, with room to spare
	linger   time.Duration // how long an idle key's lease is kept
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]cached
	kept  map[string]time.Time // keys whose lease this replica keeps, and since when
}

type cached struct {
	rev   uint64
	state orderState
}

// maxCached bounds the local cache; past it the cache starts afresh (it is
// only a read saver: a stale entry costs one failed compare-and-set).
const maxCached = 100_000

// defaultLinger is how long a replica keeps an idle key's lease.
const defaultLinger = 200 * time.Millisecond

// leaseMargin is what a lease holds beyond one operator call: the writes and
// the result around it, and clocks that differ a little between replicas.
const leaseMargin = 5 * time.Second

// newOrderBook keeps order in kv for the replica owner, whose operator calls
// take at most call.
func newOrderBook(kv jetstream.KeyValue, owner string, call time.Duration) *orderBook {
	return &orderBook{kv: kv, owner: owner, call: call, leaseTTL: call + leaseMargin, linger: defaultLinger, now: time.Now,
		cache: make(map[string]cached), kept: make(map[string]time.Time)}
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
		o.remember(key, cached{})
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

// maxRaces bounds how often a step re-reads after losing a compare-and-set.
const maxRaces = 16

// held reports whether this replica holds the lease of st with time to spare
// for one more operator call. While it does, no other replica applies the
// key, and the cached applied request is the truth.
func (o *orderBook) held(st orderState, now time.Time) bool {
	l := st.Lease
	return l != nil && l.Owner == o.owner && now.Add(o.call+leaseMargin/2).Before(l.Expires)
}

// wantedByOther reports whether another replica has marked st wanted.
func (o *orderBook) wantedByOther(st orderState, now time.Time) bool {
	w := st.Wanted
	return w != nil && w.Owner != o.owner && now.Before(w.Until)
}

// Begin decides what to do with request r of key and, when it may proceed,
// makes sure this replica holds the key's lease. The caller holds the key's
// local lock (keyLocks) from Begin to Commit or Release.
func (o *orderBook) Begin(ctx context.Context, key string, r ref) (ticket, error) {
	fresh := false
	for range maxRaces {
		c, err := o.load(ctx, key, fresh)
		if err != nil {
			return ticket{}, err
		}
		st := c.state
		t := ticket{key: key, req: r, rev: c.rev, state: st}
		now := o.now()
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
		t.attempt = 1
		if st.Tries != nil && st.Tries.ID == r.ID {
			t.attempt = st.Tries.N + 1
		}
		if o.held(st, now) {
			// Kept from an earlier request: no write needed to go on.
			o.unkeep(key)
			t.verdict = proceed
			return t, nil
		}
		taken := st.Lease != nil && st.Lease.Owner != o.owner && now.Before(st.Lease.Expires)
		if (taken || o.wantedByOther(st, now)) && !fresh {
			// The cache may be behind: make sure before waiting. (A write
			// needs no such care: its compare-and-set checks.)
			fresh = true
			continue
		}
		if taken {
			t.verdict = wait
			t.waitFor = min(st.Lease.Expires.Sub(now), 2*o.linger)
			o.markWanted(ctx, key, c.rev, st, now)
			return t, nil
		}
		if o.wantedByOther(st, now) {
			// Let the replica that asked have its turn.
			t.verdict, t.waitFor = wait, 2*o.linger
			return t, nil
		}
		next := st
		next.Lease = &lease{Owner: o.owner, Expires: now.Add(o.leaseTTL)}
		next.Tries = &tries{ID: r.ID, N: t.attempt}
		next.Wanted = nil
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

// markWanted asks the holder of key's lease to let it go (best effort: a
// lost race means someone wrote, which is as good).
func (o *orderBook) markWanted(ctx context.Context, key string, rev uint64, st orderState, now time.Time) {
	if w := st.Wanted; w != nil && w.Owner == o.owner && now.Add(o.leaseTTL/2).Before(w.Until) {
		return // still marked
	}
	st.Wanted = &want{Owner: o.owner, Until: now.Add(o.leaseTTL)}
	_, _ = o.write(ctx, key, rev, st)
}

// settle writes the state that ends a ticket: apply edits it, and the lease
// is kept (renewed) unless another replica wants the key. On a lost race it
// re-reads and edits the fresh state, as long as the lease is still this
// replica's or free.
func (o *orderBook) settle(ctx context.Context, t ticket, apply func(*orderState)) error {
	rev, st := t.rev, t.state
	for range maxRaces {
		now := o.now()
		next := st
		apply(&next)
		keep := false
		if next.Lease == nil || next.Lease.Owner == o.owner {
			keep = !o.wantedByOther(next, now)
			next.Lease = nil
			if keep {
				next.Lease = &lease{Owner: o.owner, Expires: now.Add(o.leaseTTL)}
			}
		}
		_, err := o.write(ctx, t.key, rev, next)
		if err == nil {
			if keep {
				o.keep(t.key, now)
			} else {
				o.unkeep(t.key)
			}
			return nil
		}
		if !isConflict(err) {
			return err
		}
		c, err := o.load(ctx, t.key, true)
		if err != nil {
			return err
		}
		rev, st = c.rev, c.state
	}
	return fmt.Errorf("lost %d races in a row", maxRaces)
}

// Commit records that the ticket's request was applied, in the same write
// that renews (or, when wanted elsewhere, frees) the lease. If the lease was
// lost meanwhile, the applied request is still recorded unless a newer one
// already is.
func (o *orderBook) Commit(ctx context.Context, t ticket) error {
	r := t.req
	err := o.settle(ctx, t, func(st *orderState) {
		if st.Applied == nil || st.Applied.before(r) {
			st.Applied = &r
		}
		st.Tries = nil
	})
	if err != nil {
		return fmt.Errorf("order commit %s: %w", t.key, err)
	}
	return nil
}

// Release ends a ticket without applying its request. After a failed call
// it records the try; after a verdict that needed no call it writes nothing
// (a lease this replica keeps goes at the end of its linger).
func (o *orderBook) Release(ctx context.Context, t ticket) error {
	if t.verdict != proceed {
		if o.held(t.state, o.now()) {
			o.keep(t.key, o.now())
		}
		return nil
	}
	n := t.attempt
	err := o.settle(ctx, t, func(st *orderState) {
		st.Tries = &tries{ID: t.req.ID, N: n}
	})
	if err != nil {
		return fmt.Errorf("order release %s: %w", t.key, err)
	}
	return nil
}

func (o *orderBook) keep(key string, at time.Time) {
	o.mu.Lock()
	o.kept[key] = at
	o.mu.Unlock()
}

func (o *orderBook) unkeep(key string) {
	o.mu.Lock()
	delete(o.kept, key)
	o.mu.Unlock()
}

// sweep lets go of the leases of keys idle for the linger (all of them when
// all is true, at shutdown). A key in use by a local request is left alone:
// tryLock takes the key's local lock if it is free.
func (o *orderBook) sweep(ctx context.Context, all bool, tryLock func(key string) (func(), bool)) {
	now := o.now()
	var due []string
	o.mu.Lock()
	for key, at := range o.kept {
		if all || now.Sub(at) >= o.linger {
			due = append(due, key)
		}
	}
	o.mu.Unlock()
	for _, key := range due {
		unlock, ok := tryLock(key)
		if !ok {
			continue // in use: whoever uses it keeps or frees it
		}
		o.free(ctx, key)
		unlock()
	}
}

// free drops this replica's lease of key, if it still has it.
func (o *orderBook) free(ctx context.Context, key string) {
	defer o.unkeep(key)
	fresh := false
	for range maxRaces {
		c, err := o.load(ctx, key, fresh)
		if err != nil {
			return
		}
		if l := c.state.Lease; l == nil || l.Owner != o.owner {
			return
		}
		next := c.state
		next.Lease = nil
		_, err = o.write(ctx, key, c.rev, next)
		if !isConflict(err) {
			return
		}
		fresh = true
	}
}

// runSweeper frees idle leases every half linger until ctx ends, then frees
// every lease this replica still keeps, so the next replica need not wait.
func (o *orderBook) runSweeper(ctx context.Context, tryLock func(string) (func(), bool)) {
	t := time.NewTicker(o.linger / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			o.sweep(context.WithoutCancel(ctx), true, tryLock)
			return
		case <-t.C:
			o.sweep(ctx, false, tryLock)
		}
	}
}

// keyLocks serialises the requests of one key inside this process, so that
// local requests queue here instead of racing for the lease in the bucket.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one token while locked; size 1 is the lock itself
	refs int           // holder and waiters; the entry goes with the last
}

func newKeyLocks() *keyLocks { return &keyLocks{locks: make(map[string]*keyLock)} }

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
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; k.drop(key, l) }, nil
	case <-ctx.Done():
		k.drop(key, l)
		return nil, ctx.Err()
	}
}

// TryLock takes key's lock only if no local request holds or awaits it.
func (k *keyLocks) TryLock(key string) (func(), bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, busy := k.locks[key]; busy {
		return nil, false
	}
	l := &keyLock{ch: make(chan struct{}, 1), refs: 1}
	l.ch <- struct{}{}
	k.locks[key] = l
	return func() { <-l.ch; k.drop(key, l) }, true
}

// Waiting reports how many local requests of key wait behind its holder.
func (k *keyLocks) Waiting(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.locks[key]; ok {
		return l.refs - 1
	}
	return 0
}

func (k *keyLocks) drop(key string, l *keyLock) {
	k.mu.Lock()
	l.refs--
	if l.refs == 0 {
		delete(k.locks, key)
	}
	k.mu.Unlock()
}
