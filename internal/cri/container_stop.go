package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer stops a running container. CRI makes it idempotent: an
// unknown container is already stopped.
func (s *Service) StopContainer(ctx context.Context, r *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	if _, err := s.store.Containers.Get(r.GetContainerId()); err != nil {
		if errdefs.IsNotFound(err) {
			return &runtime.StopContainerResponse{}, nil
		}
		return nil, err
	}
	return nil, notBuilt("stopping a container", 4)
}
