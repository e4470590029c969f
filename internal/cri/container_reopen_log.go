package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/store"
)

// ReopenContainerLog has the monitor reopen the container's log file, after
// kubelet rotated it.
func (s *Service) ReopenContainerLog(ctx context.Context, r *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	c, err := s.store.Containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State() != store.ContainerRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if c.LogFile == "" {
		return &runtime.ReopenContainerLogResponse{}, nil
	}
	sb, err := s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, err
	}
	if err := (monitor.Client{Socket: sb.MonitorSocket}).Reopen(ctx, c.ID, c.LogFile); err != nil {
		return nil, fmt.Errorf("reopen log of container %s: %w", c.ID, err)
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}
