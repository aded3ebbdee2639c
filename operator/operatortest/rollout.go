package operatortest

import (
	"maps"
	"time"

	"github.com/boreas/operator-bridge/operator"
)

// Rollout scripts how the fake operator moves an app from the traffic split
// it had to a newly applied one, as its status reports it. The zero Rollout
// reports the applied split at once, every version healthy.
//
//	srv.SetRollout(operatortest.Rollout{Step: 0.1, Every: 100 * time.Millisecond})
//	srv.SetRollout(operatortest.Rollout{Unhealthy: map[string]int{"v2": 40}})
type Rollout struct {
	// Step is how much traffic (a fraction) each version moves toward its
	// new share per Every; 0 moves it at once.
	Step  float64
	Every time.Duration
	// Stuck stops every rollout where it is (and a new apply where it
	// starts) until a Rollout without Stuck is set.
	Stuck bool
	// Unhealthy gives versions the health level they report (the version's
	// and its nodes'); versions not named report 100.
	Unhealthy map[string]int
}

// roll is one app's move from one split to another.
type roll struct {
	from   operator.Status // where it stood when the apply (or the last SetRollout) came
	to     operator.Status // the applied split
	start  time.Time
	frozen bool // stuck where from is
}

// SetRollout replaces how rollouts proceed; rollouts under way go on (or
// stop, or resume) from where they are.
func (s *Server) SetRollout(r Rollout) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, rl := range s.rolls {
		rl.from, rl.start, rl.frozen = s.positionLocked(rl, now), now, r.Stuck
	}
	r.Unhealthy = maps.Clone(r.Unhealthy)
	s.rollout = r
}

// startRollLocked records that app was just applied as to. s.mu is held.
func (s *Server) startRollLocked(app string, to operator.Status) {
	if s.rolls == nil {
		s.rolls = make(map[string]*roll)
	}
	now := time.Now()
	from := operator.Status{App: app}
	if rl, ok := s.rolls[app]; ok {
		from = s.positionLocked(rl, now)
	}
	s.rolls[app] = &roll{from: from, to: to, start: now, frozen: s.rollout.Stuck}
}

// positionLocked is the split rl has reached by now. s.mu is held.
func (s *Server) positionLocked(rl *roll, now time.Time) operator.Status {
	r := s.rollout
	switch {
	case rl.frozen:
		return move(rl.from, rl.to, 0)
	case r.Step <= 0 || r.Every <= 0:
		return clone(rl.to)
	}
	return move(rl.from, rl.to, float64(now.Sub(rl.start)/r.Every)*r.Step)
}

// observedLocked is the status of app as the rollout has brought it so
// far, from st, the applied split, with the scripted health levels. s.mu
// is held.
func (s *Server) observedLocked(app string, st operator.Status) operator.Status {
	out := clone(st)
	if rl, ok := s.rolls[app]; ok {
		out = s.positionLocked(rl, time.Now())
	}
	for i := range out.Versions {
		v := &out.Versions[i]
		level, ok := s.rollout.Unhealthy[v.Version]
		if !ok {
			continue
		}
		v.Healthy.Level = level
		for k := range v.Nodes {
			v.Nodes[k].Healthy.Level = level
		}
	}
	return out
}

// move returns the split between from and to after every version's
// percent moved by at most d toward its share in to: to's versions in its
// order, then from's other versions while they keep traffic.
func move(from, to operator.Status, d float64) operator.Status {
	out := clone(to)
	old := map[string]operator.VersionStatus{}
	for _, v := range from.Versions {
		old[v.Version] = v
	}
	for i := range out.Versions {
		v := &out.Versions[i]
		v.Percent = toward(old[v.Version].Percent, v.Percent, d)
		delete(old, v.Version)
	}
	for _, v := range from.Versions {
		if _, gone := old[v.Version]; !gone {
			continue
		}
		v.Percent = toward(v.Percent, 0, d)
		if v.Percent > 0 {
			c := v
			c.Nodes = append([]operator.NodeStatus(nil), v.Nodes...)
			out.Versions = append(out.Versions, c)
		}
	}
	return out
}

func toward(from, to, d float64) float64 {
	switch {
	case to-from > d:
		return from + d
	case from-to > d:
		return from - d
	}
	return to
}
