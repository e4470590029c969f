package cri

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	nriapi "github.com/containerd/nri/pkg/api"
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
	if err := s.removeContainer(ctx, c, true); err != nil {
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
// step tolerates having been done already. With later, its files go after
// the call (bundleCleanups): the container is gone from the record and the
// monitor when it returns, its mounts and directories moments later.
func (s *Service) removeContainer(ctx context.Context, c store.Container, later bool) error {
	if err := s.stopContainer(ctx, c, 0, syscall.SIGKILL); err != nil {
		return err
	}
	// What plugins are told of the removal is read while the bundle is
	// there (the stop recorded an exit since c was read).
	var removed *nriapi.Container
	if s.nri.Enabled() {
		if fresh, err := s.store.Containers.Get(c.ID); err == nil {
			removed = nriContainer(fresh, nil)
		}
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
	if !later {
		if err := s.cleanupBundle(ctx, c); err != nil {
			return err
		}
	}
	if err := s.store.Containers.Delete(c.ID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if later {
		s.cleanups.start(s, c)
	}
	if podErr == nil && removed != nil {
		s.nriRemoved(ctx, removed, sb)
	}
	s.stats.Forget(c.CgroupsPath)
	s.logger.InfoContext(ctx, "container removed", "id", c.ID)
	return nil
}

// bundleCleanups are the files of removed containers being cleaned up
// after their RemoveContainer returned: unmounting a root file system and
// removing a snapshot and a bundle cost a few ms that no caller needs to
// wait for (containerd, too, leaves a removed container's snapshot to its
// garbage collector). RemovePodSandbox waits for its pod's, and finishes
// those that failed; recovery removes any a crash interrupted (a bundle
// without a record).
type bundleCleanups struct {
	mu      sync.Mutex
	pending map[string]map[string]*bundleCleanup // pod ID -> container ID; guarded by mu
}

type bundleCleanup struct {
	c    store.Container
	done chan struct{}
	err  error // set before done is closed
}

// start cleans up a removed container's files in the background.
func (b *bundleCleanups) start(s *Service, c store.Container) {
	bc := &bundleCleanup{c: c, done: make(chan struct{})}
	b.mu.Lock()
	if b.pending == nil {
		b.pending = map[string]map[string]*bundleCleanup{}
	}
	if b.pending[c.SandboxID] == nil {
		b.pending[c.SandboxID] = map[string]*bundleCleanup{}
	}
	b.pending[c.SandboxID][c.ID] = bc
	b.mu.Unlock()
	s.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		bc.err = s.cleanupBundle(ctx, c)
		close(bc.done)
		if bc.err != nil {
			s.logger.Warn("removed container's files not cleaned up; RemovePodSandbox or recovery retries", "id", c.ID, "error", bc.err)
			return // kept for RemovePodSandbox
		}
		b.forget(c)
	})
}

// forget drops a finished cleanup.
func (b *bundleCleanups) forget(c store.Container) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pending[c.SandboxID], c.ID)
	if len(b.pending[c.SandboxID]) == 0 {
		delete(b.pending, c.SandboxID)
	}
}

// finish waits for the cleanups of a pod's removed containers and does
// again, here, those that failed.
func (b *bundleCleanups) finish(ctx context.Context, s *Service, podID string) error {
	b.mu.Lock()
	var list []*bundleCleanup
	for _, bc := range b.pending[podID] {
		list = append(list, bc)
	}
	b.mu.Unlock()
	for _, bc := range list {
		select {
		case <-bc.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if bc.err != nil {
			if err := s.cleanupBundle(ctx, bc.c); err != nil {
				return err
			}
		}
		b.forget(bc.c)
	}
	return nil
}
