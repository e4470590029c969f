package cri

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-cri/berth/internal/store"
)

// phase times one phase of starting a pod or container: a sample of the
// phase histogram, and a child span of the call's when tracing.
func (s *Service) phase(ctx context.Context, name string) (end func()) {
	observe := s.metrics.Phase(name)
	_, span := s.tracer.Start(ctx, name)
	return func() {
		span.End()
		observe()
	}
}

// stateCollector computes, on each scrape, how many pods and containers
// berth records in each state and how many pod monitors run: read from the
// store's in-memory index (and /proc for the monitors), never behind a
// write.
type stateCollector struct{ s *Service }

var (
	containersDesc = prometheus.NewDesc("berth_containers", "Containers berth records, by state.", []string{"state"}, nil)
	podsDesc       = prometheus.NewDesc("berth_pod_sandboxes", "Pod sandboxes berth records, by state.", []string{"state"}, nil)
	monitorsDesc   = prometheus.NewDesc("berth_pod_monitors_running", "Pod monitor processes running.", nil, nil)
)

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- containersDesc
	ch <- podsDesc
	ch <- monitorsDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	byState := map[string]int{"created": 0, "running": 0, "exited": 0}
	for _, ctr := range c.s.store.Containers.List() {
		switch ctr.State() {
		case store.ContainerCreated:
			byState["created"]++
		case store.ContainerRunning:
			byState["running"]++
		case store.ContainerExited:
			byState["exited"]++
		}
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(n), state)
	}
	ready, notReady, monitors := 0, 0, 0
	for _, sb := range c.s.store.Sandboxes.List() {
		if sb.Ready {
			ready++
		} else {
			notReady++
		}
		if monitorAlive(sb) {
			monitors++
		}
	}
	ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(ready), "ready")
	ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(notReady), "notready")
	ch <- prometheus.MustNewConstMetric(monitorsDesc, prometheus.GaugeValue, float64(monitors))
}
