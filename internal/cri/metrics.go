package cri

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
)

// The CRI metrics: cAdvisor's container_* series, which kubelet serves on
// /metrics/cadvisor when the runtime provides them. CRI values are
// integers, so *_seconds_total counters are whole seconds.

// metricLabels are the labels every series has, in cAdvisor's order:
// container (its CRI name; "POD" for pod-level series), id (its cgroup),
// image, name (the runtime's ID), namespace and pod (the pod's).
var metricLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

type metricDesc struct {
	name, help string
	typ        runtime.MetricType
	extra      []string // labels after metricLabels
}

const (
	counter = runtime.MetricType_COUNTER
	gauge   = runtime.MetricType_GAUGE
)

var metricDescs = []metricDesc{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter, []string{"cpu"}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counter, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counter, nil},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, nil},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, nil},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, nil},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, nil},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, nil},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, nil},
	{"container_memory_failcnt", "Number of memory usage hits limits.", counter, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, []string{"failure_type", "scope"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, nil},
	{"container_processes", "Number of processes running inside the container.", gauge, nil},
	{"container_threads", "Number of threads running inside the container.", gauge, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero.", gauge, nil},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, nil},
	{"container_sockets", "Number of open sockets for the container.", gauge, nil},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, []string{"device"}},
	{"container_fs_inodes_free", "Number of available Inodes.", gauge, []string{"device"}},
	{"container_fs_inodes_total", "Number of Inodes.", gauge, []string{"device"}},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, []string{"device"}},
	{"container_fs_reads_total", "Cumulative count of reads completed.", counter, []string{"device"}},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, []string{"device"}},
	{"container_fs_writes_total", "Cumulative count of writes completed.", counter, []string{"device"}},
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, []string{"device", "major", "minor", "operation"}},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, []string{"interface"}},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, nil},
	{"container_spec_cpu_quota", "CPU quota of the container.", gauge, nil},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, nil},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, nil},
	{"container_last_seen", "Last time a container was seen by the exporter.", gauge, nil},
}

// ListMetricDescriptors describes every series ListPodSandboxMetrics gives.
func (s *Service) ListMetricDescriptors(ctx context.Context, r *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	out := make([]*runtime.MetricDescriptor, 0, len(metricDescs))
	for _, d := range metricDescs {
		out = append(out, &runtime.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: append(append([]string(nil), metricLabels...), d.extra...)})
	}
	return &runtime.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

// ListPodSandboxMetrics gives every ready pod's series: the network on the
// pod, the rest per running container.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, r *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	var out []*runtime.PodSandboxMetrics
	for _, sb := range s.store.Sandboxes.List() {
		if !sb.Ready {
			continue
		}
		pm := &runtime.PodSandboxMetrics{PodSandboxId: sb.ID, Metrics: s.podMetrics(sb)}
		for _, c := range s.podContainers(sb.ID) {
			ms, err := s.containerMetrics(ctx, sb, c)
			if err != nil {
				return nil, err
			}
			if len(ms) > 0 {
				pm.ContainerMetrics = append(pm.ContainerMetrics, &runtime.ContainerMetrics{ContainerId: c.ID, Metrics: ms})
			}
		}
		out = append(out, pm)
	}
	return &runtime.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

// series gathers one object's metrics under its base label values.
type series struct {
	base []string
	now  int64
	out  []*runtime.Metric
}

func (m *series) add(name string, typ runtime.MetricType, v uint64, extra ...string) {
	m.out = append(m.out, &runtime.Metric{
		Name: name, Timestamp: m.now, MetricType: typ,
		LabelValues: append(append([]string(nil), m.base...), extra...),
		Value:       &runtime.UInt64Value{Value: v},
	})
}

// podMetrics are a pod's network series, from its namespace's counters.
func (s *Service) podMetrics(sb store.Sandbox) []*runtime.Metric {
	if sb.Paths.NetNS == "" {
		return nil
	}
	ifaces, err := stats.NetworkInterfaces(sb.Paths.NetNS)
	if err != nil {
		return nil
	}
	m := &series{base: []string{"POD", sb.ID, "", sb.ID, sb.Metadata.Namespace, sb.Metadata.Name}, now: time.Now().UnixNano()}
	for _, i := range ifaces {
		m.add("container_network_receive_bytes_total", counter, i.RxBytes, i.Name)
		m.add("container_network_receive_packets_total", counter, i.RxPackets, i.Name)
		m.add("container_network_receive_errors_total", counter, i.RxErrors, i.Name)
		m.add("container_network_receive_packets_dropped_total", counter, i.RxDropped, i.Name)
		m.add("container_network_transmit_bytes_total", counter, i.TxBytes, i.Name)
		m.add("container_network_transmit_packets_total", counter, i.TxPackets, i.Name)
		m.add("container_network_transmit_errors_total", counter, i.TxErrors, i.Name)
		m.add("container_network_transmit_packets_dropped_total", counter, i.TxDropped, i.Name)
	}
	return m.out
}

// containerMetrics are a running container's series (none for one that
// does not run: its cgroup is gone).
func (s *Service) containerMetrics(ctx context.Context, sb store.Sandbox, c store.Container) ([]*runtime.Metric, error) {
	if c.State() != store.ContainerRunning {
		return nil, nil
	}
	smp, err := s.stats.Read(c.CgroupsPath)
	if err != nil {
		return nil, nil // exited meanwhile, or a cgroup berth cannot read (systemd driver)
	}
	procs, err := s.stats.CountProcesses(c.CgroupsPath)
	if err != nil {
		return nil, nil
	}
	var cfg runtime.ContainerConfig
	if err := proto.Unmarshal(c.Config, &cfg); err != nil {
		return nil, fmt.Errorf("container %s config: %w", c.ID, err)
	}
	d := smp.Detail
	m := &series{base: []string{c.Metadata.Name, c.CgroupsPath, c.Image, c.ID, sb.Metadata.Namespace, sb.Metadata.Name}, now: smp.Time.UnixNano()}
	m.add("container_cpu_usage_seconds_total", counter, smp.CPUNanos/1e9, "total")
	m.add("container_cpu_user_seconds_total", counter, d.CPUUserNanos/1e9)
	m.add("container_cpu_system_seconds_total", counter, d.CPUSystemNanos/1e9)
	m.add("container_cpu_cfs_periods_total", counter, d.CFSPeriods)
	m.add("container_cpu_cfs_throttled_periods_total", counter, d.CFSThrottledPeriods)
	m.add("container_cpu_cfs_throttled_seconds_total", counter, d.CFSThrottledNanos/1e9)
	m.add("container_memory_usage_bytes", gauge, smp.MemoryUsage)
	m.add("container_memory_working_set_bytes", gauge, smp.WorkingSet)
	m.add("container_memory_rss", gauge, smp.RSS)
	m.add("container_memory_cache", gauge, d.MemoryCache)
	m.add("container_memory_mapped_file", gauge, d.MemoryMappedFile)
	m.add("container_memory_swap", gauge, d.MemorySwap)
	m.add("container_memory_kernel_usage", gauge, d.MemoryKernel)
	m.add("container_memory_max_usage_bytes", gauge, d.MemoryMaxUsage)
	m.add("container_memory_failcnt", counter, d.MemoryFailcnt)
	m.add("container_memory_failures_total", counter, smp.PageFaults-smp.MajorPageFaults, "pgfault", "container")
	m.add("container_memory_failures_total", counter, smp.MajorPageFaults, "pgmajfault", "container")
	m.add("container_oom_events_total", counter, d.OOMKills)
	m.add("container_processes", gauge, procs.Processes)
	m.add("container_threads", gauge, procs.Threads)
	m.add("container_threads_max", gauge, d.PidsLimit)
	m.add("container_file_descriptors", gauge, procs.FileDescriptors)
	m.add("container_sockets", gauge, procs.Sockets)

	fsDir := s.imageFsDir()
	if used, _, err := s.images.RootfsUsage(ctx, c.SnapshotKey); err == nil {
		m.add("container_fs_usage_bytes", gauge, used, fsDir)
	}
	var st unix.Statfs_t
	if unix.Statfs(fsDir, &st) == nil {
		m.add("container_fs_limit_bytes", gauge, st.Blocks*uint64(st.Bsize), fsDir)
		m.add("container_fs_inodes_free", gauge, st.Ffree, fsDir)
		m.add("container_fs_inodes_total", gauge, st.Files, fsDir)
	}
	for _, dev := range d.Devices {
		name := fmt.Sprintf("%d:%d", dev.Major, dev.Minor)
		major, minor := fmt.Sprint(dev.Major), fmt.Sprint(dev.Minor)
		m.add("container_fs_reads_bytes_total", counter, dev.ReadBytes, name)
		m.add("container_fs_reads_total", counter, dev.Reads, name)
		m.add("container_fs_writes_bytes_total", counter, dev.WriteBytes, name)
		m.add("container_fs_writes_total", counter, dev.Writes, name)
		m.add("container_blkio_device_usage_total", counter, dev.ReadBytes, name, major, minor, "Read")
		m.add("container_blkio_device_usage_total", counter, dev.WriteBytes, name, major, minor, "Write")
	}

	res := cfg.GetLinux().GetResources()
	m.add("container_spec_cpu_period", gauge, uint64(max(res.GetCpuPeriod(), 0)))
	m.add("container_spec_cpu_quota", gauge, uint64(max(res.GetCpuQuota(), 0)))
	m.add("container_spec_cpu_shares", gauge, uint64(max(res.GetCpuShares(), 0)))
	m.add("container_spec_memory_limit_bytes", gauge, uint64(max(res.GetMemoryLimitInBytes(), 0)))
	m.add("container_spec_memory_swap_limit_bytes", gauge, uint64(max(res.GetMemorySwapLimitInBytes(), 0)))
	m.add("container_start_time_seconds", gauge, uint64(c.StartedAt.Unix()))
	m.add("container_last_seen", gauge, uint64(time.Now().Unix()))
	return m.out, nil
}
