package cri

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/signal"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/store"
)

// killWait bounds how long berth waits for a SIGKILLed container to be
// reported exited.
const killWait = 2 * time.Minute

// StopContainer sends the image's stop signal (or SIGTERM), waits up to the
// timeout, then kills every process of the container. CRI makes it
// idempotent: an unknown or stopped container is fine.
func (s *Service) StopContainer(ctx context.Context, r *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	timeout := time.Duration(r.GetTimeout()) * time.Second
	c, ctx, release, err := s.holdContainer(ctx, r.GetContainerId(), timeout+killWait+opTimeout)
	if errdefs.IsNotFound(err) {
		return &runtime.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer release()
	sig := syscall.SIGTERM
	if c.StopSignal != "" {
		parsed, err := signal.ParseSignal(c.StopSignal)
		if err != nil {
			s.logger.Warn("image stop signal not understood; using SIGTERM", "id", c.ID, "signal", c.StopSignal)
		} else {
			sig = parsed
		}
	}
	if err := s.stopContainer(ctx, c, timeout, sig); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

// stopContainer stops a running container: sig, up to timeout, then
// SIGKILL to all its processes. It returns once the exit is recorded.
func (s *Service) stopContainer(ctx context.Context, c store.Container, timeout time.Duration, sig syscall.Signal) error {
	if c.State() == store.ContainerCreated {
		c = s.settleUnrecordedStart(ctx, c)
	}
	if c.State() != store.ContainerRunning {
		return nil
	}
	sb, err := s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return fmt.Errorf("pod of container %s: %w", c.ID, err)
	}
	client := s.monitors.Client(sb.MonitorSocket)
	exited, stopWaiting := s.exits.wait(c.ID)
	defer stopWaiting()
	if s.exitRecorded(c.ID) {
		return nil
	}
	if timeout > 0 && sig != syscall.SIGKILL {
		if err := client.Kill(ctx, c.ID, sig, false); err != nil {
			return s.killError(c.ID, err)
		}
		select {
		case <-exited:
			return nil
		case <-time.After(timeout):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.killAndAwait(ctx, client, c.ID, exited)
}

// killAndAwait SIGKILLs every process of container id and waits (up to
// killWait) for exited, which the caller registered before.
func (s *Service) killAndAwait(ctx context.Context, client monitorClient, id string, exited <-chan struct{}) error {
	if err := client.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
		return s.killError(id, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("container %s not reported exited %s after SIGKILL: %w", id, killWait, errdefs.ErrUnavailable)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exitRecorded reports whether the store already has the container exited
// (the exit may have been recorded before the waiter was registered).
func (s *Service) exitRecorded(id string) bool {
	c, err := s.store.Containers.Get(id)
	return err != nil || c.State() != store.ContainerRunning
}

func (s *Service) killError(id string, err error) error {
	if errors.Is(err, monitor.ErrUnreachable) {
		return fmt.Errorf("signal container %s: %v: %w", id, err, errdefs.ErrUnavailable)
	}
	return fmt.Errorf("signal container %s: %w", id, err)
}
