package cri

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
)

// PodSandboxStats reports a pod's usage: the sum over its containers, and
// each container's own.
func (s *Service) PodSandboxStats(ctx context.Context, r *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	sb, err := s.store.Sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.podStats(ctx, sb)
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the pods matching the filter.
func (s *Service) ListPodSandboxStats(ctx context.Context, r *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	f := r.GetFilter()
	var out []*runtime.PodSandboxStats
	for _, sb := range s.store.Sandboxes.List() {
		if (f.GetId() != "" && !matchesID(sb.ID, f.GetId())) || !matchesLabels(sb.Labels, f.GetLabelSelector()) {
			continue
		}
		st, err := s.podStats(ctx, sb)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return &runtime.ListPodSandboxStatsResponse{Stats: out}, nil
}

func (s *Service) podStats(ctx context.Context, sb store.Sandbox) (*runtime.PodSandboxStats, error) {
	now := time.Now().UnixNano()
	cpu := &runtime.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtime.UInt64Value{}, UsageNanoCores: &runtime.UInt64Value{}}
	mem := &runtime.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtime.UInt64Value{}, UsageBytes: &runtime.UInt64Value{},
		RssBytes: &runtime.UInt64Value{}, PageFaults: &runtime.UInt64Value{}, MajorPageFaults: &runtime.UInt64Value{}}
	linux := &runtime.LinuxPodSandboxStats{Cpu: cpu, Memory: mem, Process: &runtime.ProcessUsage{Timestamp: now, ProcessCount: &runtime.UInt64Value{}}}
	for _, c := range s.podContainers(sb.ID) {
		cs, smp, err := s.containerStats(ctx, c)
		if err != nil {
			return nil, err
		}
		linux.Containers = append(linux.Containers, cs)
		linux.Process.ProcessCount.Value += smp.Pids
		add := func(dst, src *runtime.UInt64Value) {
			if src != nil {
				dst.Value += src.Value
			}
		}
		add(cpu.UsageCoreNanoSeconds, cs.Cpu.UsageCoreNanoSeconds)
		add(cpu.UsageNanoCores, cs.Cpu.UsageNanoCores)
		add(mem.WorkingSetBytes, cs.Memory.WorkingSetBytes)
		add(mem.UsageBytes, cs.Memory.UsageBytes)
		add(mem.RssBytes, cs.Memory.RssBytes)
		add(mem.PageFaults, cs.Memory.PageFaults)
		add(mem.MajorPageFaults, cs.Memory.MajorPageFaults)
	}
	linux.Network = podNetworkUsage(sb, now)
	return &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{
			Id:          sb.ID,
			Metadata:    podMetadata(sb),
			Labels:      sb.Labels,
			Annotations: sb.Annotations,
		},
		Linux: linux,
	}, nil
}

// podNetworkUsage is the pod's interface counters (nil for a host-network
// pod, whose counters are the host's, or one whose namespace is gone);
// eth0, the CNI interface, is the default.
func podNetworkUsage(sb store.Sandbox, now int64) *runtime.NetworkUsage {
	if sb.Paths.NetNS == "" {
		return nil
	}
	ifaces, err := stats.NetworkInterfaces(sb.Paths.NetNS)
	if err != nil || len(ifaces) == 0 {
		return nil
	}
	out := &runtime.NetworkUsage{Timestamp: now}
	for _, i := range ifaces {
		u := &runtime.NetworkInterfaceUsage{
			Name:     i.Name,
			RxBytes:  &runtime.UInt64Value{Value: i.RxBytes},
			RxErrors: &runtime.UInt64Value{Value: i.RxErrors},
			TxBytes:  &runtime.UInt64Value{Value: i.TxBytes},
			TxErrors: &runtime.UInt64Value{Value: i.TxErrors},
		}
		if i.Name == "eth0" || out.DefaultInterface == nil {
			if out.DefaultInterface != nil {
				out.Interfaces = append(out.Interfaces, out.DefaultInterface)
			}
			out.DefaultInterface = u
			continue
		}
		out.Interfaces = append(out.Interfaces, u)
	}
	return out
}
