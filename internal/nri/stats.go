package nri

import (
	"sort"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/prometheus/client_golang/prometheus"
)

// Stats is what the adaptation reports about plugins: for `crictl info`
// and as Prometheus series (it is a prometheus.Collector).
type Stats struct {
	plugins     prometheus.Gauge
	invocations *prometheus.CounterVec
	latency     *prometheus.HistogramVec

	mu      sync.Mutex
	count   int                  // connected plugins; guarded by mu
	invoked map[string]time.Time // plugin name -> last invocation; guarded by mu
}

func newStats() *Stats {
	return &Stats{
		plugins: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_nri_plugins", Help: "NRI plugins connected.",
		}),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_nri_plugin_invocations_total", Help: "Events relayed to NRI plugins, by plugin, operation and result.",
		}, []string{"plugin", "operation", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_nri_plugin_latency_seconds", Help: "How long NRI plugins took to handle an event.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"plugin", "operation"}),
		invoked: map[string]time.Time{},
	}
}

var _ adaptation.Metrics = (*Stats)(nil)

// Stats returns the plugin figures; nil when NRI is disabled.
func (n *NRI) Stats() *Stats {
	if !n.Enabled() {
		return nil
	}
	return n.stats
}

// RecordPluginInvocation implements adaptation.Metrics.
func (s *Stats) RecordPluginInvocation(plugin, operation string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.invocations.WithLabelValues(plugin, operation, result).Inc()
	s.mu.Lock()
	s.invoked[plugin] = time.Now()
	s.mu.Unlock()
}

// RecordPluginLatency implements adaptation.Metrics.
func (s *Stats) RecordPluginLatency(plugin, operation string, d time.Duration) {
	s.latency.WithLabelValues(plugin, operation).Observe(d.Seconds())
}

// RecordPluginAdjustments implements adaptation.Metrics.
func (s *Stats) RecordPluginAdjustments(string, string, *adaptation.ContainerAdjustment, int, int) {}

// UpdatePluginCount implements adaptation.Metrics.
func (s *Stats) UpdatePluginCount(count int) {
	s.plugins.Set(float64(count))
	s.mu.Lock()
	s.count = count
	s.mu.Unlock()
}

// Plugins returns how many plugins are connected and the names of those
// that were relayed an event, in order.
func (s *Stats) Plugins() (int, []string) {
	if s == nil {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.invoked))
	for name := range s.invoked {
		names = append(names, name)
	}
	sort.Strings(names)
	return s.count, names
}

// Describe implements prometheus.Collector.
func (s *Stats) Describe(ch chan<- *prometheus.Desc) {
	s.plugins.Describe(ch)
	s.invocations.Describe(ch)
	s.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *Stats) Collect(ch chan<- prometheus.Metric) {
	s.plugins.Collect(ch)
	s.invocations.Collect(ch)
	s.latency.Collect(ch)
}
