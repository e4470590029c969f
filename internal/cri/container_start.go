package cri

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/store"
)

// StartContainer has the pod's monitor run the container. A container that
// fails to start is recorded as exited with reason StartError.
func (s *Service) StartContainer(ctx context.Context, r *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	c, err := s.store.Containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if st := c.State(); st != store.ContainerCreated {
		return nil, fmt.Errorf("container %s is %s, not created: %w", c.ID, stateName(st), errdefs.ErrFailedPrecondition)
	}
	sb, err := s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("pod of container %s: %w", c.ID, err)
	}
	if !sb.Ready {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	var cfg runtime.ContainerConfig
	if err := proto.Unmarshal(c.Config, &cfg); err != nil {
		return nil, fmt.Errorf("container %s config: %w", c.ID, err)
	}
	if opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); opts.GetPid() == runtime.NamespaceMode_TARGET {
		// The spec names the target's process: it must still be the one
		// that runs, or the container would join whatever took its PID.
		if _, err := s.targetPIDNamespace(sb.ID, opts.GetTargetId()); err != nil {
			return nil, err
		}
	}
	started := time.Now().UTC()
	pid, err := monitor.Client{Socket: sb.MonitorSocket}.Start(ctx, c.ID, c.Bundle, monitor.StartOptions{
		LogPath: c.LogFile, Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
	})
	if errors.Is(err, monitor.ErrAlreadyStarted) {
		// A start the daemon died before recording: record it, once the
		// monitor has its PID.
		if c = s.settleUnrecordedStart(ctx, c); c.State() == store.ContainerCreated {
			return nil, fmt.Errorf("container %s is still being started: %w", c.ID, errdefs.ErrUnavailable)
		}
		return &runtime.StartContainerResponse{}, nil
	}
	if err != nil {
		now := time.Now().UTC()
		if _, uerr := s.store.Containers.Update(c.ID, func(c store.Container) (store.Container, error) {
			c.StartedAt, c.FinishedAt = now, now
			c.ExitCode = 128
			c.Reason, c.Message = reasonStartError, err.Error()
			return c, nil
		}); uerr != nil {
			s.logger.Error("record start failure", "id", c.ID, "error", uerr)
		}
		return nil, fmt.Errorf("start container %s: %w", c.ID, err)
	}
	if _, err := s.store.Containers.Update(c.ID, func(c store.Container) (store.Container, error) {
		c.Pid = pid
		if c.StartedAt.IsZero() {
			c.StartedAt = started
		}
		return c, nil
	}); err != nil {
		return nil, err
	}
	s.logger.InfoContext(ctx, "container started", "id", c.ID, "pid", pid)
	return &runtime.StartContainerResponse{}, nil
}

func stateName(st store.ContainerState) string {
	switch st {
	case store.ContainerRunning:
		return "running"
	case store.ContainerExited:
		return "exited"
	default:
		return "created"
	}
}
