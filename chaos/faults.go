package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// Rig is everything a fault can touch.
type Rig struct {
	Cluster   *Cluster
	Replicas  []*Replica
	Proxies   []*Proxy // Proxies[i] carries Replicas[i]'s NATS connection
	Envs      []string
	Operators map[string]*operatortest.Server // by environment
	// OperatorTimeout is the replicas' OPERATOR_TIMEOUT; a pause lasts it
	// plus 5 s, longer than an order lease.
	OperatorTimeout time.Duration

	natsMu    sync.Mutex   // one node down at a time: the cluster keeps its quorum
	replicaMu []sync.Mutex // one fault at a time per replica
	envMu     map[string]*sync.Mutex
	once      sync.Once
}

func (r *Rig) init() {
	r.once.Do(func() {
		r.replicaMu = make([]sync.Mutex, len(r.Replicas))
		r.envMu = map[string]*sync.Mutex{}
		for _, e := range r.Envs {
			r.envMu[e] = &sync.Mutex{}
		}
	})
}

// FaultKind is one kind of fault: Run injects it on a target chosen with
// rng, holds it, heals it and returns its window. It returns ok false when
// its target is busy with another fault (nothing was done).
type FaultKind struct {
	Name string
	Run  func(ctx context.Context, r *Rig, rng *rand.Rand) (w FaultWindow, ok bool, err error)
}

// order order bucket's stream.
var orderStream = "KV_" + bridge.OrderBucket

// FaultKinds are the faults of the suite, in the order the phases run them.
var FaultKinds = []FaultKind{
	{"kill", replicaFault(func(ctx context.Context, r *Rig, rep *Replica, _ *rand.Rand) (time.Time, error) {
		if err := rep.Kill(); err != nil {
			return time.Time{}, err
		}
		start := time.Now()
		sleep(ctx, 2*time.Second)
		if err := rep.Start(); err != nil {
			return start, err
		}
		return start, nil
	})},
	{"pause", replicaFault(func(ctx context.Context, r *Rig, rep *Replica, _ *rand.Rand) (time.Time, error) {
		if err := rep.Pause(); err != nil {
			return time.Time{}, err
		}
		start := time.Now()
		sleep(ctx, r.OperatorTimeout+5*time.Second)
		return start, rep.Resume()
	})},
	{"nats-deploy-leader", natsLeaderFault(events.StreamDeploy)},
	{"nats-order-leader", natsLeaderFault(orderStream)},
	{"stall", proxyFault(func(p *Proxy, _ *rand.Rand) (string, func()) {
		p.Stall(true)
		return "", func() { p.Stall(false) }
	}, 8*time.Second)},
	{"delay", proxyFault(func(p *Proxy, rng *rand.Rand) (string, func()) {
		d := time.Duration(200+rng.IntN(800)) * time.Millisecond
		p.Delay(d)
		return " by " + d.String(), func() { p.Delay(0) }
	}, 10*time.Second)},
	{"op-latency", operatorFault(func(r *Rig, rng *rand.Rand) (string, operatortest.Fault) {
		d := time.Duration(500+rng.IntN(int(r.OperatorTimeout/time.Millisecond))) * time.Millisecond
		return " of " + d.String(), operatortest.Fault{Latency: d}
	}, 8*time.Second)},
	{"op-hang", operatorFault(func(*Rig, *rand.Rand) (string, operatortest.Fault) {
		return "", operatortest.Fault{Hang: true}
	}, 6*time.Second)},
	{"op-5xx", operatorFault(func(_ *Rig, rng *rand.Rand) (string, operatortest.Fault) {
		code := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[rng.IntN(3)]
		return fmt.Sprintf(" %d", code), operatortest.Fault{StatusCode: code}
	}, 6*time.Second)},
	{"op-409", operatorFault(func(*Rig, *rand.Rand) (string, operatortest.Fault) {
		return "", operatortest.Fault{StatusCode: http.StatusConflict}
	}, 6*time.Second)},
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// replicaFault runs do on a random replica that no other fault holds; do
// returns when the fault started and heals it before it returns.
func replicaFault(do func(context.Context, *Rig, *Replica, *rand.Rand) (time.Time, error)) func(context.Context, *Rig, *rand.Rand) (FaultWindow, bool, error) {
	return func(ctx context.Context, r *Rig, rng *rand.Rand) (FaultWindow, bool, error) {
		r.init()
		i := rng.IntN(len(r.Replicas))
		if !r.replicaMu[i].TryLock() {
			return FaultWindow{}, false, nil
		}
		defer r.replicaMu[i].Unlock()
		rep := r.Replicas[i]
		start, err := do(ctx, r, rep, rng)
		w := FaultWindow{Target: rep.Name, Replica: rep.Name, Start: start, End: time.Now()}
		if err != nil {
			return w, true, fmt.Errorf("replica %s: %w", rep.Name, err)
		}
		return w, true, nil
	}
}

// natsLeaderFault shuts down the node leading stream and starts it again
// 10 s later.
func natsLeaderFault(stream string) func(context.Context, *Rig, *rand.Rand) (FaultWindow, bool, error) {
	return func(ctx context.Context, r *Rig, _ *rand.Rand) (FaultWindow, bool, error) {
		if !r.natsMu.TryLock() {
			return FaultWindow{}, false, nil
		}
		defer r.natsMu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		i, err := r.Cluster.WaitStreamLeader(wctx, stream)
		if err != nil {
			return FaultWindow{}, false, err
		}
		start := time.Now()
		r.Cluster.Stop(i)
		sleep(ctx, 10*time.Second)
		err = r.Cluster.Start(i)
		w := FaultWindow{Target: fmt.Sprintf("%s (leader of %s)", r.Cluster.Name(i), stream), Start: start, End: time.Now()}
		return w, true, err
	}
}

// proxyFault applies set to a random replica's proxy for hold.
func proxyFault(set func(*Proxy, *rand.Rand) (string, func()), hold time.Duration) func(context.Context, *Rig, *rand.Rand) (FaultWindow, bool, error) {
	return func(ctx context.Context, r *Rig, rng *rand.Rand) (FaultWindow, bool, error) {
		r.init()
		i := rng.IntN(len(r.Replicas))
		if !r.replicaMu[i].TryLock() {
			return FaultWindow{}, false, nil
		}
		defer r.replicaMu[i].Unlock()
		what, heal := set(r.Proxies[i], rng)
		start := time.Now()
		sleep(ctx, hold)
		heal()
		return FaultWindow{Target: r.Replicas[i].Name + "'s NATS connection" + what, Replica: r.Replicas[i].Name, Start: start, End: time.Now()}, true, nil
	}
}

// operatorFault gives a random environment's operator a fault for hold.
func operatorFault(fault func(*Rig, *rand.Rand) (string, operatortest.Fault), hold time.Duration) func(context.Context, *Rig, *rand.Rand) (FaultWindow, bool, error) {
	return func(ctx context.Context, r *Rig, rng *rand.Rand) (FaultWindow, bool, error) {
		r.init()
		env := r.Envs[rng.IntN(len(r.Envs))]
		mu := r.envMu[env]
		if !mu.TryLock() {
			return FaultWindow{}, false, nil
		}
		defer mu.Unlock()
		what, f := fault(r, rng)
		srv := r.Operators[env]
		srv.SetFault(f)
		start := time.Now()
		sleep(ctx, hold)
		srv.SetFault(operatortest.Fault{})
		return FaultWindow{Target: env + "'s operator" + what, Env: env, Start: start, End: time.Now()}, true, nil
	}
}

// Heal undoes whatever faults are left: every node and replica running and
// resumed, proxies forwarding, operators healthy.
func (r *Rig) Heal() error {
	var errs []error
	for i := range r.Cluster.Size() {
		if err := r.Cluster.Start(i); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range r.Proxies {
		p.Stall(false)
		p.Delay(0)
	}
	for _, rep := range r.Replicas {
		if rep.Running() {
			rep.Resume()
		} else if err := rep.Start(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, srv := range r.Operators {
		srv.SetFault(operatortest.Fault{})
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal: %v", errs)
	}
	return nil
}
