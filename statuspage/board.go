package statuspage

import (
	"slices"
	"sync"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// section is one live part of the page; each has its own generation, so a
// live update re-renders only what changed.
type section int

const (
	secSummary section = iota
	secEnvs
	secRollouts
	secResults
	secApplied
	secDeadLetters
	numSections
)

// sectionNames are the names of the sections' templates, of the elements
// they fill and of their server-sent events.
var sectionNames = [numSections]string{"summary", "envs", "rollouts", "results", "applied", "deadletters"}

// result is one stored deploy result.
type result struct {
	ID   string // the result event's id
	Time time.Time
	events.DeployResult
}

// progress is the data of io.boreas.deploy.progress.v1, read tolerantly:
// fields the page does not know are ignored, missing ones stay zero.
type progress struct {
	RequestID   string           `json:"request_id"`
	Environment string           `json:"environment"`
	App         string           `json:"app"`
	Target      []share          `json:"target"`
	Observed    events.AppStatus `json:"observed"`
	Phase       string           `json:"phase"`
	Final       bool             `json:"final"`
	Message     string           `json:"message"`
	ElapsedMS   int64            `json:"elapsed_ms"`
}

// share is one version at its percent of a rollout's target.
type share struct {
	Version string  `json:"version"`
	Percent float64 `json:"percent"`
}

// rollout is the latest progress event of a request still being followed.
type rollout struct {
	Time time.Time
	progress
}

// applied is the version applied last to an environment's app.
type applied struct {
	Environment, App, Version, RequestID string
	Time                                 time.Time
	// Phase is the rollout phase of that request, once progress is known.
	Phase string
}

// deadLetter is one message of the DEADLETTER stream.
type deadLetter struct {
	Seq     uint64
	Time    time.Time
	Subject string // where the message came from
	Reason  string // its Operator-Bridge-Error header
	Size    int
}

type appKey struct{ env, app string }

// limits bound the board's memory.
type limits struct {
	results     int // deploy results kept
	rollouts    int // rollouts in progress kept
	applied     int // environment-and-app pairs kept
	deadLetters int // recent dead letters kept
}

// board is the replica's picture of the cluster, fed by the stream
// followers and read by every page. Every write bumps the generation of
// the sections it touches and wakes the pages' live streams.
type board struct {
	lim limits

	mu       sync.RWMutex
	health   map[string]events.Health // environment -> last health
	results  []result                 // oldest first, at most lim.results
	rollouts map[string]rollout       // request id -> latest progress, not final
	applied  map[appKey]applied
	dead     []deadLetter // oldest first, at most lim.deadLetters
	deadN    uint64       // messages in DEADLETTER
	deadSeq  uint64       // the last sequence deadN counts
	synced   [numStreams]bool
	gen      [numSections]uint64
	changed  chan struct{} // closed and replaced at every change
}

func newBoard(lim limits) *board {
	b := &board{
		lim:      lim,
		health:   map[string]events.Health{},
		rollouts: map[string]rollout{},
		applied:  map[appKey]applied{},
		changed:  make(chan struct{}),
	}
	for i := range b.gen {
		b.gen[i] = 1
	}
	return b
}

// touch marks sections changed and wakes the watchers; b.mu is held.
func (b *board) touch(ss ...section) {
	for _, s := range ss {
		b.gen[s]++
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// watch returns the sections' generations and a channel closed at the next
// change after them.
func (b *board) watch() ([numSections]uint64, <-chan struct{}) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.gen, b.changed
}

func (b *board) setSynced(s stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.synced[s] {
		b.synced[s] = true
		b.touch(secSummary)
	}
}

func (b *board) putHealth(h events.Health) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev, ok := b.health[h.Environment]; ok && prev.CheckedAt.After(h.CheckedAt) {
		return // a late event from a slower replica
	}
	b.health[h.Environment] = h
	b.touch(secSummary, secEnvs)
}

func (b *board) putResult(r result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.results) >= b.lim.results {
		b.results = slices.Delete(b.results, 0, len(b.results)-b.lim.results+1)
	}
	b.results = append(b.results, r)
	touched := []section{secResults}
	if r.Outcome == events.Succeeded {
		k := appKey{r.Environment, r.App}
		if prev, ok := b.applied[k]; !ok || !prev.Time.After(r.Time) {
			a := applied{Environment: r.Environment, App: r.App, Version: r.Version, RequestID: r.RequestID, Time: r.Time}
			if ok && prev.RequestID == r.RequestID {
				a.Phase = prev.Phase // a replay of the request applied last
			}
			b.applied[k] = a
			b.trimApplied()
			touched = append(touched, secApplied)
		}
	}
	b.touch(touched...)
}

// trimApplied forgets the oldest pairs beyond the limit; b.mu is held.
func (b *board) trimApplied() {
	for len(b.applied) > b.lim.applied {
		var oldest appKey
		first := true
		for k, a := range b.applied {
			if first || a.Time.Before(b.applied[oldest].Time) {
				oldest, first = k, false
			}
		}
		delete(b.applied, oldest)
	}
}

func (b *board) putProgress(p rollout) {
	b.mu.Lock()
	defer b.mu.Unlock()
	touched := []section{secRollouts}
	if p.Final {
		delete(b.rollouts, p.RequestID)
	} else {
		b.rollouts[p.RequestID] = p
		for len(b.rollouts) > b.lim.rollouts {
			var oldest string
			for id, r := range b.rollouts {
				if oldest == "" || r.Time.Before(b.rollouts[oldest].Time) {
					oldest = id
				}
			}
			delete(b.rollouts, oldest)
		}
	}
	k := appKey{p.Environment, p.App}
	if a, ok := b.applied[k]; ok && a.RequestID == p.RequestID && a.Phase != p.Phase {
		a.Phase = p.Phase
		b.applied[k] = a
		touched = append(touched, secApplied)
	}
	b.touch(touched...)
}

func (b *board) putDeadLetter(d deadLetter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.dead); n > 0 && b.dead[n-1].Seq >= d.Seq {
		return
	}
	if len(b.dead) >= b.lim.deadLetters {
		b.dead = slices.Delete(b.dead, 0, len(b.dead)-b.lim.deadLetters+1)
	}
	b.dead = append(b.dead, d)
	if d.Seq > b.deadSeq {
		b.deadN++
		b.deadSeq = d.Seq
	}
	b.touch(secSummary, secDeadLetters)
}

// setDeadCount takes the number of dead letters from the stream's state,
// n messages up to sequence last (messages age out and are purged, which
// the follower does not see); the ones seen after last are added.
func (b *board) setDeadCount(n, last uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.dead {
		if d.Seq > last {
			n++
		}
	}
	b.deadSeq = max(b.deadSeq, last)
	if b.deadN != n {
		b.deadN = n
		b.touch(secSummary, secDeadLetters)
	}
}
