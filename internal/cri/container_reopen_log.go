package cri

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/store"
)

// ReopenContainerLog has the monitor reopen the container's log file, after
// kubelet rotated it.
func (s *Service) ReopenContainerLog(ctx context.Context, r *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	c, ctx, release, err := s.holdContainer(ctx, r.GetContainerId(), opTimeout)
	if err != nil {
		return nil, err
	}
	defer release()
	if c.State() != store.ContainerRunning {
		return nil, fmt.Errorf("container %s is %s, not running: %w", c.ID, stateName(c.State()), errdefs.ErrFailedPrecondition)
	}
	if c.LogFile == "" {
		return &runtime.ReopenContainerLogResponse{}, nil
	}
	sb, err := s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, err
	}
	err = s.monitors.Client(sb.MonitorSocket).Reopen(ctx, c.ID, c.LogFile, podLogDirectory(sb))
	switch {
	case errors.Is(err, monitor.ErrLogPath):
		return nil, fmt.Errorf("reopen log of container %s: config.log_path: %w: %w", c.ID, err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, monitor.ErrUnreachable):
		return nil, fmt.Errorf("reopen log of container %s: %w: %w", c.ID, err, errdefs.ErrUnavailable)
	case err != nil:
		return nil, fmt.Errorf("reopen log of container %s: %w", c.ID, err)
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}

// podLogDirectory is the pod's log_directory ("" if unset or unreadable).
func podLogDirectory(sb store.Sandbox) string {
	var cfg runtime.PodSandboxConfig
	if proto.Unmarshal(sb.Config, &cfg) != nil {
		return ""
	}
	return cfg.GetLogDirectory()
}
