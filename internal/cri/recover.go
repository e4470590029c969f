package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/store"
)

// Recover brings the daemon's view in line with the host after a restart,
// before the gate opens: half-made pods and containers (on disk, never
// recorded) are removed; exits that happened while the daemon was away are
// recorded; pods whose monitor died get their containers stopped; every pod
// with a live monitor is watched again. Run must already be running.
func (s *Service) Recover(ctx context.Context) error {
	if err := s.sweepOrphans(ctx); err != nil {
		return err
	}
	for _, sb := range s.store.Sandboxes.List() {
		client := monitor.Client{Socket: sb.MonitorSocket}
		if _, err := client.State(ctx); err != nil {
			if errors.Is(err, monitor.ErrUnreachable) && !monitorAlive(sb) {
				s.monitorDied(ctx, sb)
				continue
			}
			return fmt.Errorf("pod %s monitor: %w", sb.ID, err)
		}
		s.reconcile(ctx, sb, client)
		s.watch(ctx, sb.ID)
	}
	return nil
}

// sweepOrphans removes pod and container directories that have no record:
// what a create interrupted by a crash left behind.
func (s *Service) sweepOrphans(ctx context.Context) error {
	pods, err := os.ReadDir(filepath.Join(s.cfg.State, "pods"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range pods {
		id := e.Name()
		if _, err := s.store.Sandboxes.Get(id); err == nil {
			continue
		}
		dir := s.podDir(id)
		killOrphanMonitor(dir)
		if len(id) >= 16 {
			_ = os.Remove(s.monitorSocket(id))
		}
		if err := sandbox.Remove(dir); err != nil {
			return fmt.Errorf("remove half-made pod %s: %w", id, err)
		}
		s.logger.Info("removed half-made pod sandbox", "id", id)
	}
	pauses, err := os.ReadDir(filepath.Join(s.cfg.State, "pause"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range pauses {
		id := e.Name()
		if sb, err := s.store.Sandboxes.Get(id); err == nil && sb.PauseContainer {
			continue
		}
		if err := s.removePauseContainer(ctx, store.Sandbox{ID: id}); err != nil {
			return fmt.Errorf("remove half-made pause container: %w", err)
		}
		s.logger.Info("removed half-made pause container", "pod", id)
	}
	ctrs, err := os.ReadDir(filepath.Join(s.cfg.State, "containers"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ctrs {
		id := e.Name()
		if _, err := s.store.Containers.Get(id); err == nil {
			continue
		}
		c := store.Container{ID: id, Bundle: s.containerDir(id), SnapshotKey: id}
		if err := s.cleanupBundle(ctx, c); err != nil {
			return fmt.Errorf("remove half-made container: %w", err)
		}
		s.logger.Info("removed half-made container", "id", id)
	}
	return nil
}

// killOrphanMonitor kills the monitor a half-made pod started, if its PID
// still names a berth-monitor.
func killOrphanMonitor(podDir string) {
	b, err := os.ReadFile(filepath.Join(podDir, "monitor.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && strings.Contains(string(cmdline), "berth-monitor") {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
