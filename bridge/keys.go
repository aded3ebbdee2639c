package bridge

import "sync"

// keyQueues runs the requests of one environment and app one at a time
// inside this process. The first request of an idle key owns it and runs on
// its worker; requests that come while the key is busy wait in the key's
// queue without holding a MAX_IN_FLIGHT slot, and the owner runs them after
// its own, one by one. So a burst for one key takes one slot, and every
// other key keeps flowing.
type keyQueues struct {
	mu      sync.Mutex
	keys    map[string]*keyQueue
	waiting int // requests in all queues
	perKey  int // bound of one key's queue
	total   int // bound of all queues
}

type keyQueue struct {
	jobs []*deployJob // FIFO; the owner is not in it
}

// entry is what enter did with a request.
type entry int

const (
	owns   entry = iota // the key was idle: the caller owns it and runs the request
	queued              // the key is busy: the owner will run it
	full                // the key's queue (or all queues) is full: nak it with a delay
)

func newKeyQueues(perKey, total int) *keyQueues {
	return &keyQueues{keys: make(map[string]*keyQueue), perKey: perKey, total: total}
}

// enter makes j's request the owner of key, or queues it behind the owner.
func (k *keyQueues) enter(key string, j *deployJob) entry {
	k.mu.Lock()
	defer k.mu.Unlock()
	q, busy := k.keys[key]
	if !busy {
		k.keys[key] = &keyQueue{}
		return owns
	}
	if len(q.jobs) >= k.perKey || k.waiting >= k.total {
		return full
	}
	q.jobs = append(q.jobs, j)
	k.waiting++
	return queued
}

// next hands the key's next queued request to its owner, or frees the key
// when none waits.
func (k *keyQueues) next(key string) *deployJob {
	k.mu.Lock()
	defer k.mu.Unlock()
	q := k.keys[key]
	if q == nil {
		return nil
	}
	if len(q.jobs) == 0 {
		delete(k.keys, key)
		return nil
	}
	j := q.jobs[0]
	q.jobs[0] = nil
	q.jobs = q.jobs[1:]
	k.waiting--
	return j
}

// tryOwn owns key only if no local request owns or awaits it. The owner
// lets go with next, which may hand it a request that came meanwhile.
func (k *keyQueues) tryOwn(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, busy := k.keys[key]; busy {
		return false
	}
	k.keys[key] = &keyQueue{}
	return true
}

// Waiting is how many requests wait in all queues.
func (k *keyQueues) Waiting() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.waiting
}
