package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// UpdatePodSandboxResources takes a pod's new overhead and resources, which
// kubelet sends during an in-place resize before it changes the pod's
// cgroup (kubelet's, as cgroup_parent names it: berth keeps no pod cgroup
// of its own to change). They are recorded in the pod's config, shown by
// verbose PodSandboxStatus, and passed to NRI plugins, any of which may
// veto the resize (FailedPrecondition, which kubelet takes as a refusal).
func (s *Service) UpdatePodSandboxResources(ctx context.Context, r *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("pod_sandbox_id must be set: %w", errdefs.ErrInvalidArgument)
	}
	if r.GetOverhead() == nil && r.GetResources() == nil {
		return nil, fmt.Errorf("overhead or resources must be set: %w", errdefs.ErrInvalidArgument)
	}
	for field, res := range map[string]*runtime.LinuxContainerResources{"overhead": r.GetOverhead(), "resources": r.GetResources()} {
		if err := checkResources(res, field); err != nil {
			return nil, err
		}
	}
	// Exclusive of the pod's stop and removal (and of other resizes).
	sb, ctx, release, err := s.holdPod(ctx, r.GetPodSandboxId(), opTimeout)
	if err != nil {
		return nil, err
	}
	defer release()
	if !sb.Ready {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	if err := s.nri.UpdatePodSandbox(ctx, nriPod(sb), nriResources(r.GetOverhead()), nriResources(r.GetResources())); err != nil {
		return nil, nriRefused("the pod's resize", err)
	}
	sb, err = s.store.Sandboxes.Update(sb.ID, func(sb store.Sandbox) (store.Sandbox, error) {
		var cfg runtime.PodSandboxConfig
		if err := proto.Unmarshal(sb.Config, &cfg); err != nil {
			return sb, fmt.Errorf("decode config of pod %s: %w", sb.ID, err)
		}
		if cfg.Linux == nil {
			cfg.Linux = &runtime.LinuxPodSandboxConfig{}
		}
		if r.GetOverhead() != nil {
			cfg.Linux.Overhead = r.GetOverhead()
		}
		if r.GetResources() != nil {
			cfg.Linux.Resources = r.GetResources()
		}
		raw, err := proto.Marshal(&cfg)
		if err != nil {
			return sb, err
		}
		sb.Config = raw
		return sb, nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.nri.PostUpdatePodSandbox(ctx, nriPod(sb)); err != nil {
		s.logger.WarnContext(ctx, "nri: PostUpdatePodSandbox", "id", sb.ID, "error", err)
	}
	s.logger.InfoContext(ctx, "pod sandbox resources updated", "id", sb.ID)
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}
