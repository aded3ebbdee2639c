package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bridge's Prometheus series. Label sets stay bounded: event
// type and outcome are enums, operator kind has three values, endpoint is one
// per configured operator (never an app or an event id).
type metrics struct {
	events       *prometheus.CounterVec   // type, outcome
	callSeconds  *prometheus.HistogramVec // kind, call
	inFlight     prometheus.Gauge
	redeliveries *prometheus.CounterVec // type
	deadLetters  prometheus.Counter
	circuit      *prometheus.GaugeVec // endpoint; 0 closed, 1 open, 2 half open
	environments prometheus.Gauge
	healthy      *prometheus.GaugeVec // endpoint
	// leaseConflicts counts requests that found their key's lease held by
	// another replica; orderErrors order state that could not be read.
	leaseConflicts prometheus.Counter
	orderErrors    prometheus.Counter
	forwarded      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "operator_bridge", Name: "events_total",
			Help: "Requests handled, by event type and outcome.",
		}, []string{"type", "outcome"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "operator_bridge", Name: "operator_call_seconds",
			Help:    "Latency of operator calls, by operator kind and call.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind", "call"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "operator_bridge", Name: "in_flight",
			Help: "Requests being handled now.",
		}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "operator_bridge", Name: "redeliveries_total",
			Help: "Messages received more than once, by event type.",
		}, []string{"type"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "operator_bridge", Name: "dead_letters_total",
			Help: "Messages that could not be identified and went to the dead-letter stream.",
		}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "operator_bridge", Name: "circuit_state",
			Help: "Circuit state per operator endpoint: 0 closed, 1 open, 2 half open.",
		}, []string{"endpoint"}),
		environments: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "operator_bridge", Name: "environments",
			Help: "Registered environments.",
		}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "operator_bridge", Name: "operator_healthy",
			Help: "1 when the last health check of an operator endpoint passed.",
		}, []string{"endpoint"}),
		leaseConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "operator_bridge", Name: "lease_conflicts_total",
			Help: "Deploy requests that found their environment and app being applied by another replica, and waited.",
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "operator_bridge", Name: "forwarded_total",
			Help: "Deploy requests handed to the replica holding their environment and app.",
		}),
		orderErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "operator_bridge", Name: "order_state_errors_total",
			Help: "Order state that could not be read; the request of that environment and app was retried.",
		}),
	}
	for _, c := range []prometheus.Collector{m.events, m.callSeconds, m.inFlight, m.redeliveries, m.deadLetters, m.circuit, m.environments, m.healthy, m.leaseConflicts, m.orderErrors, m.forwarded} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
