package cri

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	nriapi "github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/sysinfo"
)

// checkResources refuses what this host's cgroups cannot hold: unified
// (cgroup v2) keys on a cgroup v1 host.
func checkResources(res *runtime.LinuxContainerResources, field string) error {
	if len(res.GetUnified()) == 0 {
		return nil
	}
	if v, err := sysinfo.CgroupVersion(); err == nil && v != 2 {
		return fmt.Errorf("%s.unified: cgroup v2 keys, but this host runs cgroup v%d: %w", field, v, errdefs.ErrInvalidArgument)
	}
	return nil
}

// UpdateContainerResources changes a container's CPU, memory, hugepage and
// unified (cgroup v2) resources: on its cgroup through the runtime when it
// runs, and in its bundle's spec and its record, so that ContainerStatus
// reports them and they hold after a daemon restart and for a container
// started later. NRI plugins see the change first and may adjust or veto
// it.
func (s *Service) UpdateContainerResources(ctx context.Context, r *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	res := r.GetLinux()
	if res == nil {
		return nil, fmt.Errorf("linux resources must be set: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkResources(res, "linux"); err != nil {
		return nil, err
	}
	// One update at a time, and none during a start: the spec read here,
	// the runtime's cgroup, the spec file and the record must end equal.
	c, ctx, release, err := s.holdContainer(ctx, r.GetContainerId(), opTimeout)
	if err != nil {
		return nil, err
	}
	defer release()
	if c.State() == store.ContainerExited {
		return nil, fmt.Errorf("container %s has exited: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	updated := spec.Resources(res)
	var pod *nriapi.PodSandbox
	if s.nri.Enabled() {
		sb, err := s.store.Sandboxes.Get(c.SandboxID)
		if err != nil {
			return nil, fmt.Errorf("pod of container %s: %w", c.ID, err)
		}
		pod = nriPod(sb)
		adjusted, err := s.nri.UpdateContainer(ctx, pod, nriContainer(c, nil), nriapi.FromOCILinuxResources(updated, nil))
		if err != nil {
			return nil, nriRefused("the resource update", err)
		}
		if adjusted != nil {
			updated = adjusted.ToOCI()
			res = criResources(updated, res)
		}
	}
	if err := s.applyResources(ctx, c, updated, res); err != nil {
		return nil, err
	}
	if pod != nil {
		if c, err := s.store.Containers.Get(c.ID); err == nil {
			if err := s.nri.PostUpdateContainer(ctx, pod, nriContainer(c, nil)); err != nil {
				s.logger.WarnContext(ctx, "nri: PostUpdateContainer", "id", c.ID, "error", err)
			}
		}
	}
	s.logger.InfoContext(ctx, "container resources updated", "id", c.ID)
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

// applyResources puts resources in force for a container the caller holds
// (holdContainer): through the runtime when it runs, then in its bundle's
// spec, then in its record (res, as CRI says them; nil derives them from
// updated).
func (s *Service) applyResources(ctx context.Context, c store.Container, updated *specs.LinuxResources, res *runtime.LinuxContainerResources) error {
	sp, _, err := bundleSpec(c.Bundle)
	if err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	if res == nil {
		res = criResources(updated, nil)
	}
	if sp.Linux != nil && sp.Linux.Resources != nil {
		updated.Devices = sp.Linux.Resources.Devices // device rules are not resources kubelet updates
	}
	if c.State() == store.ContainerRunning {
		sb, err := s.store.Sandboxes.Get(c.SandboxID)
		if err != nil {
			return fmt.Errorf("pod of container %s: %w", c.ID, err)
		}
		apply := *updated
		apply.Devices = nil // unchanged; the runtime keeps the rules it has
		if err := s.handlerOf(sb).Runc().Update(ctx, c.ID, &apply); err != nil {
			return fmt.Errorf("apply resources to container %s: %v: %w", c.ID, err, errdefs.ErrFailedPrecondition)
		}
	}
	if sp.Linux == nil {
		sp.Linux = &specs.Linux{}
	}
	sp.Linux.Resources = updated
	if adj := res.GetOomScoreAdj(); adj != 0 && sp.Process != nil {
		// oom_score_adj takes effect at start only; record it for one.
		v := int(adj)
		if s.oomFloor != nil {
			v = max(v, *s.oomFloor)
		}
		sp.Process.OOMScoreAdj = &v
	}
	b, err := json.MarshalIndent(sp, "", "  ")
	if err != nil {
		return fmt.Errorf("encode runtime spec: %w", err)
	}
	if err := atomicfile.Write(layout.Bundle(c.Bundle).Spec(), b, 0o600); err != nil {
		return err
	}
	if _, err := s.store.Containers.Update(c.ID, func(c store.Container) (store.Container, error) {
		var cfg runtime.ContainerConfig
		if err := proto.Unmarshal(c.Config, &cfg); err != nil {
			return c, fmt.Errorf("container %s config: %w", c.ID, err)
		}
		if cfg.Linux == nil {
			cfg.Linux = &runtime.LinuxContainerConfig{}
		}
		cfg.Linux.Resources = res
		raw, err := proto.Marshal(&cfg)
		if err != nil {
			return c, err
		}
		c.Config = raw
		return c, nil
	}); err != nil {
		return err
	}
	return nil
}

// criResources is the CRI form of resources in force (r), for the record
// and ContainerStatus; asked, when set, gives what OCI does not hold
// (oom_score_adj).
func criResources(r *specs.LinuxResources, asked *runtime.LinuxContainerResources) *runtime.LinuxContainerResources {
	out := &runtime.LinuxContainerResources{OomScoreAdj: asked.GetOomScoreAdj()}
	if r == nil {
		return out
	}
	out.Unified = r.Unified
	if cpu := r.CPU; cpu != nil {
		out.CpusetCpus, out.CpusetMems = cpu.Cpus, cpu.Mems
		if cpu.Shares != nil {
			out.CpuShares = int64(*cpu.Shares)
		}
		if cpu.Quota != nil {
			out.CpuQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			out.CpuPeriod = int64(*cpu.Period)
		}
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			out.MemoryLimitInBytes = *m.Limit
		}
		if m.Swap != nil {
			out.MemorySwapLimitInBytes = *m.Swap
		}
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &runtime.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
	}
	return out
}
