package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tierguard/tierguard/decision"
)

// metrics are per server, on a registry of their own, so tests and
// several servers in one process never collide.
type metrics struct {
	registry      *prometheus.Registry
	decisions     *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	tokenFailures *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierguard_decisions_total",
			Help: "Decisions made, by outcome, reason, route template (or feature, resource) and tier.",
		}, []string{"allow", "reason", "kind", "route", "tier"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tierguard_decision_duration_seconds",
			Help:    "Time to evaluate one decision (a batch's time is shared among its checks).",
			Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 0.1},
		}, []string{"kind"}),
		tokenFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierguard_token_failures_total",
			Help: "Requests refused for their credentials, by reason code.",
		}, []string{"reason"}),
	}
	m.registry.MustRegister(m.decisions, m.latency, m.tokenFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&engineCollector{engine: s.engine})
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// observeBatch counts a batch's decisions with one counter update per
// distinct label set, not one per check.
func (m *metrics) observeBatch(checks []decision.Check, ds []decision.Decision, each time.Duration) {
	counts := make(map[[5]string]float64, 4)
	for i, d := range ds {
		labels, kind := decisionLabels(checks[i], d)
		counts[labels]++
		m.latency.WithLabelValues(kind).Observe(each.Seconds())
	}
	for l, n := range counts {
		m.decisions.WithLabelValues(l[:]...).Add(n)
	}
}

// observe counts a decision. The route label holds only names the policy
// declares: an unknown route or feature is "unknown", so a client cannot
// grow the label set with made-up paths.
func (m *metrics) observe(c decision.Check, d decision.Decision, elapsed time.Duration) {
	labels, kind := decisionLabels(c, d)
	m.decisions.WithLabelValues(labels[:]...).Inc()
	m.latency.WithLabelValues(kind).Observe(elapsed.Seconds())
}

// decisionLabels are allow, reason, kind, route and tier, in that order.
func decisionLabels(c decision.Check, d decision.Decision) ([5]string, string) {
	route := "unknown"
	switch d.Reason {
	case decision.ReasonRouteUnknown, decision.ReasonFeatureUnknown,
		decision.ReasonResourceUnknown, decision.ReasonCheckInvalid, decision.ReasonPolicyError:
	default:
		switch c.Kind {
		case decision.KindAPI:
			route = c.Method + " " + c.Template
		case decision.KindUI:
			route = c.Template
		case decision.KindResource:
			route = c.Type + ":" + c.Action
		case decision.KindFeature:
			route = c.Name
		}
	}
	allow := "false"
	if d.Allow {
		allow = "true"
	}
	kind := c.Kind
	if _, ok := fieldsByKind[kind]; !ok {
		kind = "invalid"
	}
	return [5]string{allow, d.Reason, kind, route, d.Tier}, kind
}

// engineCollector reports the engine's own state at scrape time.
type engineCollector struct{ engine *decision.Engine }

var (
	revisionDesc = prometheus.NewDesc("tierguard_policy_revision_info",
		"The policy revision serving now (value 1).", []string{"revision", "source"}, nil)
	policyErrorsDesc = prometheus.NewDesc("tierguard_policy_errors_total",
		"Evaluations that ended in policy_error, by cause.", []string{"cause"}, nil)
	updateFailuresDesc = prometheus.NewDesc("tierguard_policy_update_failures_total",
		"Policy updates refused because they failed to load, compile or pass their tests.", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- revisionDesc
	ch <- policyErrorsDesc
	ch <- updateFailuresDesc
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.engine.Status()
	ch <- prometheus.MustNewConstMetric(revisionDesc, prometheus.GaugeValue, 1, st.Revision, st.Source)
	for cause, n := range c.engine.PolicyErrors() {
		ch <- prometheus.MustNewConstMetric(policyErrorsDesc, prometheus.CounterValue, float64(n), cause)
	}
	ch <- prometheus.MustNewConstMetric(updateFailuresDesc, prometheus.CounterValue, float64(st.Failures))
}
