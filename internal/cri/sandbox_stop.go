package cri

import (
	"context"
	"syscall"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// markNotReady records the pod not ready (unless it is already: no write
// then) and returns its record.
func (s *Service) markNotReady(id string) (store.Sandbox, error) {
	sb, err := s.store.Sandboxes.Get(id)
	if err != nil || !sb.Ready {
		return sb, err
	}
	return s.store.Sandboxes.Update(id, func(sb store.Sandbox) (store.Sandbox, error) {
		sb.Ready = false
		return sb, nil
	})
}

// StopPodSandbox kills the pod's containers, detaches it from its network
// (CNI DEL) and marks it not ready. CRI makes it idempotent: an unknown or
// stopped sandbox is fine. The pod's namespaces stay until RemovePodSandbox.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	sb, err := s.store.Sandboxes.Get(r.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtime.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock, err := s.lockPod(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx, cancel := detach(ctx, killWait+opTimeout)
	defer cancel()
	// Not ready from here on, whatever fails below: no container is made
	// or started in a pod that is stopping, and kubelet repeats the stop.
	if sb, err = s.markNotReady(sb.ID); errdefs.IsNotFound(err) {
		return &runtime.StopPodSandboxResponse{}, nil // removed while we waited
	} else if err != nil {
		return nil, err
	}
	for _, c := range s.podContainers(sb.ID) {
		if err := s.stopContainer(ctx, c, 0, syscall.SIGKILL); err != nil {
			return nil, err
		}
	}
	if err := s.stopPauseContainer(ctx, sb); err != nil {
		return nil, err
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
