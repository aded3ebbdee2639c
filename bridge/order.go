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

// The order step keeps the order rules of docs/contract.md across replicas,
// restarts, pauses and NATS leader changes. Its state is one key per
// environment and app in the key-value bucket OrderBucket:
//
//	{"applied": ref, "floor": ref, "sent": {ref, fence, attempt}, "recent": [...], "refused": {id, n},
//	 "fence": n, "lease": {owner, ttl_ms}, "wanted": owner}
//
//   - applied is the newest request known to be applied; floor the newest one
//     that may have reached the operator (applied, or sent with no answer
//     recorded). Both only move forward. A request before floor (or before
//     sent) is superseded and never sent, so the operator never goes back.
//   - sent is the request being sent, written before its operator call: if
//     the replica dies or pauses after the call, everyone still knows the
//     request may have been applied. A retry of the same request repeats its
//     fence; every other request gets the next one (fence + 1), so fences
//     grow strictly per key, across replicas and restarts.
//   - recent remembers a few requests that left applied or sent, so a late
//     copy of one (its result lost with a NATS leader) learns what happened
//     to it instead of being told it was never sent.
//   - lease names the one replica that may call the operator for the key.
//
// No wall clock is compared across machines. The holder counts its lease on
// its own monotonic clock from just before the write that took it, and gives
// its operator call a deadline inside that. Another replica judges the lease
// by how long it has itself seen the same revision of the key unchanged: it
// takes over only after seeing it unchanged for the lease's length plus
// leaseDrift (clock rates differing by up to 1%) and leaseGuard. Its first
// sight of that revision comes after the holder's write, so the holder's
// lease has ended by then on either clock.
//
// Every request that proceeds costs one compare-and-set write (the lease,
// its sent mark and its fence together). What happened to it (applied,
// refused, unknown) is kept in this replica's memory and folded into the
// next write of the key: the next request's, or the one that frees the lease
// after the key has been idle for a short linger. A steady stream of one
// key's requests costs one write each; a lone request two.

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

// newest returns the later of two refs, either of which may be nil.
func newest(a, b *ref) *ref {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.before(*b):
		return b
	}
	return a
}

// sending is the request being sent to the operator (or sent, with no answer
// recorded yet).
type sending struct {
	ref
	Fence   uint64 `json:"fence"`
	Attempt int    `json:"attempt"` // operator calls for this request, this one included
}

// past is a request that left applied or sent.
type past struct {
	ID      string `json:"id"`
	Seq     uint64 `json:"seq,omitempty"` // its message's stream sequence (0 in state written before it was kept)
	Applied bool   `json:"applied"`       // false: sent, and whether it was applied is not known
}

// tries counts the operator calls of a request the operator refused, so
// that the same request sent anew counts on from there.
type tries struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}

// maxRecent bounds the requests remembered in recent.
const maxRecent = 16

type lease struct {
	Owner string `json:"owner"`
	TTLMS int64  `json:"ttl_ms"`
	// Forward is where the holder takes requests of the key that reach
	// other replicas (forward.go).
	Forward string `json:"forward,omitempty"`
}

func (l *lease) ttl() time.Duration { return time.Duration(l.TTLMS) * time.Millisecond }

type orderState struct {
	Applied *ref     `json:"applied,omitempty"`
	Floor   *ref     `json:"floor,omitempty"`
	Sent    *sending `json:"sent,omitempty"`
	Recent  []past   `json:"recent,omitempty"`
	Refused *tries   `json:"refused,omitempty"`
	Fence   uint64   `json:"fence,omitempty"`
	Lease   *lease   `json:"lease,omitempty"`
	Wanted  string   `json:"wanted,omitempty"`
}

// top is the newest request that may have reached the operator.
func (s *orderState) top() *ref {
	t := newest(s.Applied, s.Floor)
	if s.Sent != nil {
		t = newest(t, &s.Sent.ref)
	}
	return t
}

// remember puts p first in recent, keeping maxRecent entries.
func (s *orderState) remember(p past) {
	r := make([]past, 0, maxRecent)
	r = append(r, p)
	for _, q := range s.Recent {
		if q.ID != p.ID && len(r) < maxRecent {
			r = append(r, q)
		}
	}
	s.Recent = r
}

// verdict is what the order step says about a request.
type verdict int

const (
	proceed        verdict = iota // lease held and the request marked sent: call the operator
	alreadyApplied                // this request was applied (the last one, or an earlier one since overtaken)
	superseded                    // a newer request was applied or sent
	wait                          // another replica holds or asked for the lease
	elsewhere                     // another replica holds the lease: hand the request to it
)

// ticket is what Begin says about a request.
type ticket struct {
	key     string
	req     ref
	verdict verdict
	// winner is, for alreadyApplied, the request applied last, and for
	// superseded the newer request that overtook this one; winnerApplied
	// says whether that one is known applied (or only sent).
	winner        string
	winnerApplied bool
	// sentBefore says this request itself reached the operator before
	// (superseded: answer unknown; alreadyApplied: applied, then overtaken).
	sentBefore bool
	// appliedSeq is, for alreadyApplied, the stream sequence of the message
	// whose call applied the request (0 when not known): the same message
	// delivered again, or a replay.
	appliedSeq uint64
	// attempt counts the operator calls for this request, this one included.
	attempt int
	// fence is the apply's Boreas-Fence.
	fence uint64
	// deadline is when the operator call must have ended: inside the lease.
	deadline time.Time
	// waitFor is how long to wait before trying again, for wait.
	waitFor time.Duration
	// holder is where the lease holder takes requests, for elsewhere.
	holder string
}

// sendOutcome is what an operator call said about whether it applied.
type sendOutcome int

const (
	outcomeApplied sendOutcome = iota // the operator accepted it
	outcomeRefused                    // the operator said no: not applied
	outcomeUnknown                    // no answer: it may have been applied
)

// ErrOrderState is wrapped by the errors of order state that cannot be read.
var ErrOrderState = errors.New("order state cannot be read")

// orderBook is the order step over a key-value bucket.
type orderBook struct {
	kv       jetstream.KeyValue
	owner    string        // this replica, unique per process
	forward  string        // where this replica takes forwarded requests ("" for none)
	call     time.Duration // the longest an operator call may take
	leaseTTL time.Duration // one call and the writes around it, with room to spare
	linger   time.Duration // how long an idle key's lease is kept
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]cached
	mine  map[string]held      // keys whose lease this replica took, and when
	seen  map[string]sighting  // other replicas' leases: since when this revision is seen
	done  map[string]outcomeOf // what happened to this replica's last send of a key, not yet written
	kept  map[string]time.Time
}

type cached struct {
	rev   uint64
	state orderState
}

type held struct {
	rev     uint64
	takenAt time.Time // just before the write that took the lease (monotonic)
}

type sighting struct {
	rev   uint64
	since time.Time // monotonic
}

type outcomeOf struct {
	id      string
	outcome sendOutcome
}

// maxCached bounds each local map; past it a map starts afresh (the cache
// only saves reads; a forgotten sighting only makes a wait start over).
const maxCached = 100_000

// Lease timing. leaseMargin is what a lease holds beyond one operator call
// (the write that takes it and the one around the result); leaseGuard is
// kept free at the end of a lease; leaseDrift is the difference in clock
// rates that another replica allows for when it times a lease.
const (
	defaultLinger = 200 * time.Millisecond
	leaseMargin   = 5 * time.Second
	leaseGuard    = time.Second
	leaseDrift    = 0.01
	// minCall is the least time left in a lease for an operator call to go.
	minCall = 500 * time.Millisecond
	// wantedFor is how long a replica's request for a free key is honoured
	// while the key's revision stays unchanged.
	wantedFor = 2 * time.Second
)

// newOrderBook keeps order in kv for the replica owner, whose operator calls
// take at most call: the lease and the calls' deadlines both come from it.
func newOrderBook(kv jetstream.KeyValue, owner string, call time.Duration) *orderBook {
	return &orderBook{kv: kv, owner: owner, call: call, leaseTTL: call + leaseMargin, linger: defaultLinger, now: time.Now,
		cache: make(map[string]cached), mine: make(map[string]held), seen: make(map[string]sighting),
		done: make(map[string]outcomeOf), kept: make(map[string]time.Time)}
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
		// Never read as empty: that would forget what was applied.
		return cached{}, fmt.Errorf("%w: %s at revision %d: %v", ErrOrderState, key, e.Revision(), err)
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
		o.mu.Lock()
		delete(o.cache, key)
		o.mu.Unlock()
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

// fold writes into st what this replica knows happened to its last send of
// key, if st still names that send.
func (o *orderBook) fold(key string, st *orderState) {
	o.mu.Lock()
	d, ok := o.done[key]
	o.mu.Unlock()
	if !ok || st.Sent == nil || st.Sent.ID != d.id {
		return
	}
	switch d.outcome {
	case outcomeApplied:
		r := st.Sent.ref
		if st.Applied != nil && st.Applied.ID != r.ID && st.Applied.before(r) {
			st.remember(past{ID: st.Applied.ID, Seq: st.Applied.Seq, Applied: true})
		}
		st.Applied = newest(st.Applied, &r)
		st.Floor = newest(st.Floor, &r)
		st.Sent, st.Refused = nil, nil
	case outcomeRefused:
		st.Refused = &tries{ID: st.Sent.ID, N: st.Sent.Attempt}
		st.Sent = nil
	}
}

// folded forgets the local outcome of key once a write carried it.
func (o *orderBook) folded(key string, st orderState) {
	o.mu.Lock()
	if d, ok := o.done[key]; ok && (st.Sent == nil || st.Sent.ID != d.id) {
		delete(o.done, key)
	}
	o.mu.Unlock()
}

// lapsed reports whether another replica's lease (or request for the key) at
// revision rev has been seen unchanged long enough, and if not how long to
// wait. It never compares clocks across machines.
func (o *orderBook) lapsed(key string, rev uint64, length time.Duration) (bool, time.Duration) {
	now := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.seen[key]
	if !ok || s.rev != rev {
		if len(o.seen) >= maxCached {
			clear(o.seen)
		}
		o.seen[key] = sighting{rev: rev, since: now}
		return false, length
	}
	if left := length - now.Sub(s.since); left > 0 {
		return false, left
	}
	return true, 0
}

// resight carries the sighting of revision from over to revision to, which
// this replica wrote itself: its compare-and-set proves nobody else wrote in
// between, so the lease it times is still the one first seen at from.
func (o *orderBook) resight(key string, from, to uint64) {
	o.mu.Lock()
	if s, ok := o.seen[key]; ok && s.rev == from {
		o.seen[key] = sighting{rev: to, since: s.since}
	}
	o.mu.Unlock()
}

// observeFor is how long another replica's lease of ttl must be seen unchanged.
func observeFor(ttl time.Duration) time.Duration {
	return ttl + time.Duration(float64(ttl)*leaseDrift) + leaseGuard
}

// Begin decides what to do with request r of key and, when it may proceed,
// takes the key's lease, marks r sent and hands it its fence, in one write.
// With mayForward, a lease held by another replica that takes forwarded
// requests gives the verdict elsewhere (from the cache: a holder that let go
// meanwhile takes the lease itself). The caller runs one request of a key at
// a time (keyQueues).
func (o *orderBook) Begin(ctx context.Context, key string, r ref, mayForward bool) (ticket, error) {
	fresh := false
	for range maxRaces {
		c, err := o.load(ctx, key, fresh)
		if err != nil {
			return ticket{}, err
		}
		st := c.state
		o.fold(key, &st)
		t := ticket{key: key, req: r}
		// What happened to r itself, or to newer requests, holds even when
		// the cache is behind: applied, floor and recent only move forward.
		if a := st.Applied; a != nil && a.ID == r.ID {
			t.verdict, t.winner, t.winnerApplied, t.appliedSeq = alreadyApplied, a.ID, true, a.Seq
			return t, nil
		}
		resend := st.Sent != nil && st.Sent.ID == r.ID
		if top := st.top(); !resend && top != nil && r.before(*top) {
			t.winner = top.ID
			t.winnerApplied = st.Applied != nil && st.Applied.ID == top.ID
			t.verdict = superseded
			for _, p := range st.Recent {
				if p.ID == r.ID {
					t.sentBefore = true
					if p.Applied {
						t.verdict, t.appliedSeq = alreadyApplied, p.Seq
					}
				}
			}
			return t, nil
		}
		if l := st.Lease; l != nil && l.Owner != o.owner {
			if mayForward && l.Forward != "" {
				// Hand it over while the holder's lease has not lapsed as
				// this replica sees it; a holder that is gone (its hand-overs
				// fail) is then taken over below.
				if gone, _ := o.lapsed(key, c.rev, observeFor(l.ttl())); !gone {
					t.verdict, t.holder = elsewhere, l.Forward
					return t, nil
				}
			}
			if !fresh {
				fresh = true // the cache may be behind: make sure before waiting
				continue
			}
			gone, left := o.lapsed(key, c.rev, observeFor(l.ttl()))
			if !gone {
				t.verdict, t.waitFor = wait, min(left, 2*o.linger+time.Second)
				if st.Wanted != o.owner {
					// Ask the holder to let go at its next write.
					st.Wanted = o.owner
					if rev, err := o.write(ctx, key, c.rev, st); err == nil {
						o.resight(key, c.rev, rev)
					}
				}
				return t, nil
			}
		} else if st.Wanted != "" && st.Wanted != o.owner {
			// Another replica asked for the key: let it have its turn, as
			// long as it keeps asking.
			if !fresh {
				fresh = true
				continue
			}
			if gone, left := o.lapsed(key, c.rev, wantedFor); !gone {
				t.verdict, t.waitFor = wait, min(left, 2*o.linger)
				if st.Lease != nil { // ours: give it up now
					o.free(ctx, key)
				}
				return t, nil
			}
		}

		next := st
		if resend {
			t.attempt = st.Sent.Attempt + 1
			t.fence = st.Sent.Fence
		} else {
			if s := st.Sent; s != nil {
				// Overtaken before its answer was recorded: it may have
				// been applied, so nothing older may go after it.
				next.Floor = newest(next.Floor, &s.ref)
				next.remember(past{ID: s.ID, Seq: s.Seq})
			}
			next.Fence++
			t.attempt, t.fence = 1, next.Fence
			if st.Refused != nil && st.Refused.ID == r.ID {
				t.attempt = st.Refused.N + 1
			}
		}
		next.Sent = &sending{ref: r, Fence: t.fence, Attempt: t.attempt}
		next.Lease = &lease{Owner: o.owner, TTLMS: o.leaseTTL.Milliseconds(), Forward: o.forward}
		next.Wanted = ""
		takenAt := o.now() // before the write: the lease counts from here
		rev, err := o.write(ctx, key, c.rev, next)
		if isConflict(err) {
			fresh = true
			continue
		}
		if err != nil {
			return ticket{}, fmt.Errorf("order lease %s: %w", key, err)
		}
		o.folded(key, next)
		o.mu.Lock()
		o.mine[key] = held{rev: rev, takenAt: takenAt}
		delete(o.kept, key)
		o.mu.Unlock()
		t.verdict = proceed
		t.deadline = takenAt.Add(o.leaseTTL - leaseGuard)
		return t, nil
	}
	return ticket{}, fmt.Errorf("order lease %s: lost %d races in a row", key, maxRaces)
}

// forgetKey drops key's cached state, so the next look reads it afresh.
func (o *orderBook) forgetKey(key string) {
	o.mu.Lock()
	delete(o.cache, key)
	o.mu.Unlock()
}

// Left is how long the ticket's lease still covers an operator call; a call
// must not start with less than minCall left.
func (o *orderBook) Left(t ticket) time.Duration { return t.deadline.Sub(o.now()) }

// Done records what the operator call of a proceeding ticket said, in this
// replica's memory only; the next write of the key carries it. The lease is
// kept for the linger, so the key's next request needs no extra write.
func (o *orderBook) Done(t ticket, out sendOutcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.done) >= maxCached {
		clear(o.done)
	}
	o.done[t.key] = outcomeOf{id: t.req.ID, outcome: out}
	o.kept[t.key] = o.now()
}

// Attempts is how many operator calls the request id of key has had, as far
// as the cached state says.
func (o *orderBook) Attempts(key, id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.cache[key].state.Sent; s != nil && s.ID == id {
		return s.Attempt
	}
	return 0
}

// free writes what this replica knows of key and drops its lease, if it
// still has it.
func (o *orderBook) free(ctx context.Context, key string) {
	defer func() {
		o.mu.Lock()
		delete(o.kept, key)
		delete(o.mine, key)
		o.mu.Unlock()
	}()
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
		o.fold(key, &next)
		next.Lease = nil
		_, err = o.write(ctx, key, c.rev, next)
		if err == nil {
			o.folded(key, next)
			return
		}
		if !isConflict(err) {
			return
		}
		fresh = true
	}
}

// sweep lets go of the leases of keys idle for the linger (all of them when
// all is true, at shutdown). A key in use by a local request is left alone:
// tryLock takes the key if no local request holds or awaits it.
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

// sweepTimeout bounds the writes that free every lease at shutdown.
const sweepTimeout = 2 * time.Second

// runSweeper frees idle leases every half linger until ctx ends, then frees
// every lease this replica still keeps, each write with a deadline of its
// own, so the next replica need not wait them out.
func (o *orderBook) runSweeper(ctx context.Context, tryLock func(string) (func(), bool)) {
	t := time.NewTicker(o.linger / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sweepTimeout)
			o.sweep(fctx, true, tryLock)
			cancel()
			return
		case <-t.C:
			o.sweep(ctx, false, tryLock)
		}
	}
}
