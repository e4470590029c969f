// Package metrics holds berth's Prometheus metrics: one registry per daemon
// (no global state), the series the daemon's parts record into, and the
// HTTP handler that serves them. Every method is safe on a nil *Metrics,
// which records nothing (unit tests, tools).
//
// Labels are bounded: CRI method names, gRPC codes, fixed phase, operation
// and reason names. No container, pod or image identifies a series.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
)

// Metrics are the daemon's series.
type Metrics struct {
	registry *prometheus.Registry

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	phases   *prometheus.HistogramVec
	cni      *prometheus.HistogramVec
	cniErrs  *prometheus.CounterVec

	pullsInProgress prometheus.Gauge
	pulls           *prometheus.HistogramVec
	pullFailures    *prometheus.CounterVec
	pullBytes       *prometheus.CounterVec
	pullThroughput  prometheus.Histogram

	oomKills     prometheus.Counter
	eventsCutOff prometheus.Counter
	recovery     prometheus.Gauge
}

// Pod start phases, in the order a pod and its containers go through them.
const (
	PhaseNamespaces    = "namespaces"     // RunPodSandbox: pinned namespaces, /dev/shm
	PhaseCNIAdd        = "cni_add"        // RunPodSandbox: CNI ADD
	PhaseMonitorLaunch = "monitor_launch" // RunPodSandbox: the pod's monitor up
	PhasePodInit       = "pod_init"       // RunPodSandbox: shared PID namespace init or pause container
	PhaseStore         = "store"          // a durable record written (pod or container)
	PhaseImage         = "image"          // CreateContainer: image lookup
	PhaseSnapshot      = "snapshot"       // CreateContainer: rootfs snapshot prepared and mounted
	PhaseSpec          = "spec"           // CreateContainer: OCI spec built and written
	PhaseRuntimeStart  = "runtime_start"  // StartContainer: runtime create + start, through the monitor
)

// latencyBuckets span 0.5 ms to ~16 s: CRI calls and their phases.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// New makes the series and a registry holding them and the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cri_requests_total",
			Help: "CRI calls answered, by method and gRPC code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_cri_request_duration_seconds",
			Help:    "Time to answer a CRI call, by method (streams: until the stream ends).",
			Buckets: latencyBuckets,
		}, []string{"method"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_pod_start_phase_duration_seconds",
			Help:    "Time spent in each phase of starting pods and containers.",
			Buckets: latencyBuckets,
		}, []string{"phase"}),
		cni: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_cni_operation_duration_seconds",
			Help:    "Time of CNI ADD and DEL for a pod, by operation.",
			Buckets: latencyBuckets,
		}, []string{"operation"}),
		cniErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cni_operation_errors_total",
			Help: "CNI ADD and DEL that failed, by operation.",
		}, []string{"operation"}),
		pullsInProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_image_pulls_in_progress",
			Help: "Image pulls running now (concurrent pulls of one reference count once).",
		}),
		pulls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_image_pull_duration_seconds",
			Help:    "Time of image pulls, by result (success or failure).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"result"}),
		pullFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_image_pull_failures_total",
			Help: "Image pulls that failed, by reason.",
		}, []string{"reason"}),
		pullBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_image_pull_bytes_total",
			Help: "Bytes of image content pulls needed: fetched from a registry, or already present and skipped.",
		}, []string{"source"}),
		pullThroughput: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_image_pull_throughput_bytes_per_second",
			Help:    "Bytes fetched per second of each successful pull that fetched any.",
			Buckets: prometheus.ExponentialBuckets(1<<16, 2, 16),
		}),
		oomKills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_container_oom_kills_total",
			Help: "Container exits recorded as OOMKilled.",
		}),
		eventsCutOff: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_container_events_subscribers_cut_off_total",
			Help: "GetContainerEvents streams ended because their subscriber fell behind (each then relists).",
		}),
		recovery: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_recovery_duration_seconds",
			Help: "How long the last start-up recovery of pods and containers took.",
		}),
	}
	m.registry.MustRegister(
		m.requests, m.duration, m.phases, m.cni, m.cniErrs,
		m.pullsInProgress, m.pulls, m.pullFailures, m.pullBytes, m.pullThroughput,
		m.oomKills, m.eventsCutOff, m.recovery,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Register adds collectors that compute their series on each scrape
// (objects by state, storage).
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	if m == nil {
		return nil
	}
	for _, c := range cs {
		if err := m.registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// Call records one answered CRI call.
func (m *Metrics) Call(method string, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(method, code.String()).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
}

// Phase starts timing a pod start phase; the returned func ends it.
func (m *Metrics) Phase(phase string) func() {
	if m == nil {
		return func() {}
	}
	start := time.Now()
	return func() { m.phases.WithLabelValues(phase).Observe(time.Since(start).Seconds()) }
}

// CNI records a CNI operation ("add" or "del").
func (m *Metrics) CNI(operation string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.cni.WithLabelValues(operation).Observe(d.Seconds())
	if err != nil {
		m.cniErrs.WithLabelValues(operation).Inc()
	}
}

// PullStarted counts a pull in progress; the returned func ends it with
// its outcome: bytes fetched and skipped, and the failure reason ("" for
// success).
func (m *Metrics) PullStarted() func(fetched, present int64, reason string) {
	if m == nil {
		return func(int64, int64, string) {}
	}
	start := time.Now()
	m.pullsInProgress.Inc()
	return func(fetched, present int64, reason string) {
		m.pullsInProgress.Dec()
		d := time.Since(start)
		m.pullBytes.WithLabelValues("fetched").Add(float64(fetched))
		m.pullBytes.WithLabelValues("present").Add(float64(present))
		if reason != "" {
			m.pulls.WithLabelValues("failure").Observe(d.Seconds())
			m.pullFailures.WithLabelValues(reason).Inc()
			return
		}
		m.pulls.WithLabelValues("success").Observe(d.Seconds())
		if fetched > 0 && d > 0 {
			m.pullThroughput.Observe(float64(fetched) / d.Seconds())
		}
	}
}

// OOMKill counts a container exit recorded as OOMKilled.
func (m *Metrics) OOMKill() {
	if m != nil {
		m.oomKills.Inc()
	}
}

// EventsSubscriberCutOff counts a GetContainerEvents stream cut off.
func (m *Metrics) EventsSubscriberCutOff() {
	if m != nil {
		m.eventsCutOff.Inc()
	}
}

// Recovered records how long start-up recovery took.
func (m *Metrics) Recovered(d time.Duration) {
	if m != nil {
		m.recovery.Set(d.Seconds())
	}
}
