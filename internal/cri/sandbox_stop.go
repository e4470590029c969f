package cri

import (
	"context"
	"syscall"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// StopPodSandbox kills the pod's containers, detaches it from its network
// (CNI DEL) and marks it not ready. CRI makes it idempotent: an unknown or
// stopped sandbox is fine. The pod's namespaces stay until RemovePodSandbox.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	sb, ctx, release, err := s.holdPodToStop(ctx, r.GetPodSandboxId(), killWait+opTimeout)
	if errdefs.IsNotFound(err) {
		return &runtime.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer release()
	for _, c := range s.podContainers(sb.ID) {
		if err := s.stopContainer(ctx, c, 0, syscall.SIGKILL); err != nil {
			return nil, err
		}
	}
	if err := s.stopPauseContainer(ctx, sb); err != nil {
		return nil, err
	}
	// Its containers have stopped; the pod is still there to look at.
	// NRI tells plugins once, however often the pod is stopped.
	if s.nri.Enabled() {
		if err := s.nri.StopPodSandbox(ctx, nriPod(sb)); err != nil {
			s.logger.WarnContext(ctx, "nri: StopPodSandbox", "id", sb.ID, "error", err)
		}
	}
	if err := s.detachNetwork(ctx, sb); err != nil {
		return nil, err
	}
	if _, err := s.store.Sandboxes.Update(sb.ID, func(sb store.Sandbox) (store.Sandbox, error) {
		sb.Ready = false
		sb.NetworkAttached = false
		return sb, nil
	}); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}
