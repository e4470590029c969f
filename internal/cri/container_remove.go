package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveContainer removes a container, killing it first if it runs. CRI
// makes it idempotent: an unknown container is already removed.
func (s *Service) RemoveContainer(ctx context.Context, r *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	if _, err := s.store.Containers.Get(r.GetContainerId()); err != nil {
		if errdefs.IsNotFound(err) {
			return &runtime.RemoveContainerResponse{}, nil
		}
		return nil, err
	}
	return nil, notBuilt("removing a container", 4)
}
