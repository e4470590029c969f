package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopPodSandbox stops a pod's containers and releases its network. CRI
// makes it idempotent: an unknown sandbox is already stopped.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	if _, err := s.store.Sandboxes.Get(r.GetPodSandboxId()); err != nil {
		if errdefs.IsNotFound(err) {
			return &runtime.StopPodSandboxResponse{}, nil
		}
		return nil, err
	}
	return nil, notBuilt("stopping a pod sandbox", 4)
}
