// Package mix makes the deploy requests of the traffic the bridge is
// measured with (the bench command, make bench and the Go benchmarks), so
// that all of them measure the same thing.
//
// The realistic mix is traffic like a CD platform's: the app rotates faster
// than the environment; every other request is a two-way canary split whose
// first deployment carries a docker package; versions rise per environment
// and app, from run to run too. The simple mix sends one version per
// request, the environment rotating fastest.
package mix

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// Mix makes the requests of one run. It is not safe for concurrent use.
type Mix struct {
	realistic bool
	envs      []string
	apps      []string
	base      int64 // the run's start: versions keep rising from run to run
	sent      []int // requests so far, per environment and app
}

// New returns the mix over envs and apps of a run started at start.
func New(envs, apps []string, realistic bool, start time.Time) *Mix {
	return &Mix{realistic: realistic, envs: envs, apps: apps, base: start.Unix(), sent: make([]int, len(envs)*len(apps))}
}

// Names returns n names: prefix + 000, 001, ...
func Names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// Request returns the environment and data of the run's i-th request; call
// it for i = 0, 1, 2, ... in order.
func (m *Mix) Request(i int) (string, events.DeployRequest) {
	if !m.realistic {
		return m.envs[i%len(m.envs)], events.DeployRequest{App: m.apps[(i/len(m.envs))%len(m.apps)], Version: fmt.Sprintf("v0.0.%d", i)}
	}
	a, e := i%len(m.apps), (i/len(m.apps))%len(m.envs)
	key := e*len(m.apps) + a
	n := m.sent[key]
	m.sent[key]++
	app, version := m.apps[a], m.version(n+1)
	req := events.DeployRequest{App: app, Version: version}
	if i%2 == 1 {
		req.Deployments = []events.Deployment{
			{Version: version, Percent: 0.1, Package: json.RawMessage(`{"type":"docker","image":"registry.local/` + app + ":" + version + `"}`)},
			{Version: m.version(n), Percent: 0.9},
		}
	}
	return m.envs[e], req
}

func (m *Mix) version(n int) string { return fmt.Sprintf("1.%d.%d", m.base, n) }
