package cri

import (
	"context"
	"errors"
	"strings"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
)

// ContainerStats reports one container's CPU, memory and writable-layer use.
func (s *Service) ContainerStats(ctx context.Context, r *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	c, err := s.store.Containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, _, err := s.containerStats(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the containers matching the filter: ID (or
// unique prefix), pod sandbox ID (or prefix), label selector.
func (s *Service) ListContainerStats(ctx context.Context, r *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	f := r.GetFilter()
	var out []*runtime.ContainerStats
	for _, c := range s.store.Containers.List() {
		if (f.GetId() != "" && !matchesID(c.ID, f.GetId())) ||
			(f.GetPodSandboxId() != "" && !matchesID(c.SandboxID, f.GetPodSandboxId())) ||
			!matchesLabels(c.Labels, f.GetLabelSelector()) {
			continue
		}
		st, _, err := s.containerStats(ctx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return &runtime.ListContainerStatsResponse{Stats: out}, nil
}

// containerStats samples a container. One that does not run has no cgroup:
// it is reported with timestamps and no usage (and a zero Sample).
func (s *Service) containerStats(ctx context.Context, c store.Container) (*runtime.ContainerStats, stats.Sample, error) {
	now := time.Now().UnixNano()
	out := &runtime.ContainerStats{
		Attributes: &runtime.ContainerAttributes{
			Id:          c.ID,
			Metadata:    &runtime.ContainerMetadata{Name: c.Metadata.Name, Attempt: c.Metadata.Attempt},
			Labels:      c.Labels,
			Annotations: c.Annotations,
		},
		Cpu:    &runtime.CpuUsage{Timestamp: now},
		Memory: &runtime.MemoryUsage{Timestamp: now},
	}
	if bytes, inodes, err := s.images.RootfsUsage(ctx, c.SnapshotKey); err == nil {
		out.WritableLayer = &runtime.FilesystemUsage{
			Timestamp:  now,
			FsId:       &runtime.FilesystemIdentifier{Mountpoint: s.imageFsDir()},
			UsedBytes:  &runtime.UInt64Value{Value: bytes},
			InodesUsed: &runtime.UInt64Value{Value: inodes},
		}
	}
	if c.State() != store.ContainerRunning || !strings.HasPrefix(c.CgroupsPath, "/") {
		return out, stats.Sample{}, nil
	}
	smp, err := s.stats.Read(c.CgroupsPath)
	if errors.Is(err, stats.ErrNoCgroup) {
		return out, stats.Sample{}, nil
	}
	if err != nil {
		return nil, stats.Sample{}, err
	}
	fillUsage(out.Cpu, out.Memory, smp)
	return out, smp, nil
}

func fillUsage(cpu *runtime.CpuUsage, mem *runtime.MemoryUsage, smp stats.Sample) {
	ts := smp.Time.UnixNano()
	cpu.Timestamp = ts
	cpu.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: smp.CPUNanos}
	cpu.UsageNanoCores = &runtime.UInt64Value{Value: smp.NanoCores}
	mem.Timestamp = ts
	mem.WorkingSetBytes = &runtime.UInt64Value{Value: smp.WorkingSet}
	mem.UsageBytes = &runtime.UInt64Value{Value: smp.MemoryUsage}
	mem.RssBytes = &runtime.UInt64Value{Value: smp.RSS}
	mem.PageFaults = &runtime.UInt64Value{Value: smp.PageFaults}
	mem.MajorPageFaults = &runtime.UInt64Value{Value: smp.MajorPageFaults}
}
