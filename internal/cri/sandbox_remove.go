package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemovePodSandbox removes a pod and everything it owns. CRI makes it
// idempotent: an unknown sandbox is already removed.
func (s *Service) RemovePodSandbox(ctx context.Context, r *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	if _, err := s.store.Sandboxes.Get(r.GetPodSandboxId()); err != nil {
		if errdefs.IsNotFound(err) {
			return &runtime.RemovePodSandboxResponse{}, nil
		}
		return nil, err
	}
	return nil, notBuilt("removing a pod sandbox", 4)
}
