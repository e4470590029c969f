package cri

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroup"
	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/store"
)

// RemoveContainer removes a container, killing it first if it runs. CRI
// makes it idempotent: an unknown container is already removed.
func (s *Service) RemoveContainer(ctx context.Context, r *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	c, ctx, release, err := s.holdContainer(ctx, r.GetContainerId(), killWait+opTimeout)
	if errdefs.IsNotFound(err) {
		return &runtime.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.removeContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

// settleUnrecordedStart asks the pod's monitor about a container recorded
// as created: a crash mid-StartContainer can leave one running that the
// record never saw start. Such a container is recorded as started, so that
// it is stopped like any other. Without an answer the record stands.
func (s *Service) settleUnrecordedStart(ctx context.Context, c store.Container) store.Container {
	sb, err := s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return c
	}
	states, err := s.monitors.Client(sb.MonitorSocket).SettledState(ctx)
	if err != nil {
		return c
	}
	for _, st := range states {
		if st.ID == c.ID && st.Pid > 0 {
			s.adoptStarted(c.ID, st)
			if fresh, err := s.store.Containers.Get(c.ID); err == nil {
				return fresh
			}
		}
	}
	return c
}

// killUnrecorded kills a container the monitor runs although the record
// says it exited — a record that disagrees with the host, which must never
// leave a process behind — and forgets it once the monitor saw it exit.
func (s *Service) killUnrecorded(ctx context.Context, client monitorClient, c store.Container) error {
	s.logger.WarnContext(ctx, "the monitor runs a container recorded as exited; killing it", "id", c.ID)
	exited, stopWaiting := s.exits.wait(c.ID)
	defer stopWaiting()
	if err := s.killAndAwait(ctx, client, c.ID, exited); err != nil {
		return err
	}
	return client.Delete(ctx, c.ID)
}

// removeContainer kills, forgets, unmounts and deletes a container; every
// step tolerates having been done already.
func (s *Service) removeContainer(ctx context.Context, c store.Container) error {
	if err := s.stopContainer(ctx, c, 0, syscall.SIGKILL); err != nil {
		return err
	}
	// The monitor deletes the runtime's state and the cgroup after the
	// exit (its Shutdown waits for that); without a monitor, it is ours.
	monitorGone := true
	sb, podErr := s.store.Sandboxes.Get(c.SandboxID)
	if podErr == nil {
		client := s.monitors.Client(sb.MonitorSocket)
		err := client.Delete(ctx, c.ID)
		if errors.Is(err, monitor.ErrRunning) {
			err = s.killUnrecorded(ctx, client, c)
		}
		if err != nil && !errors.Is(err, monitor.ErrUnreachable) {
			return fmt.Errorf("container %s: %w", c.ID, err)
		}
		monitorGone = err != nil
	}
	if monitorGone {
		if err := cgroup.Remove(c.CgroupsPath); err != nil {
			s.logger.WarnContext(ctx, "container cgroup not removed", "id", c.ID, "error", err)
		}
	}
	if err := s.cleanupBundle(ctx, c); err != nil {
		return err
	}
	if err := s.store.Containers.Delete(c.ID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if podErr == nil {
		s.nriRemoved(ctx, c, sb)
	}
	s.stats.Forget(c.CgroupsPath)
	s.logger.InfoContext(ctx, "container removed", "id", c.ID)
	return nil
}
