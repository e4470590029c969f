package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/sysinfo"
)

// Recover brings the daemon's view in line with the host after a restart,
// before the gate opens: half-made pods and containers (on disk, never
// recorded) are removed; exits that happened while the daemon was away are
// recorded; pods whose monitor died get their containers stopped; every pod
// with a live monitor is watched again. Run must already be running.
func (s *Service) Recover(ctx context.Context) error {
	start := time.Now()
	defer func() { s.metrics.Recovered(time.Since(start)) }()
	s.events.keepBacklog(true)
	defer s.events.keepBacklog(false)
	if err := s.sweepOrphans(ctx); err != nil {
		return err
	}
	for _, sb := range s.store.Sandboxes.List() {
		client := s.monitors.Client(sb.MonitorSocket)
		// One call says whether the monitor answers and which protocol it
		// speaks.
		v, err := client.Protocol(ctx)
		if err != nil {
			if errors.Is(err, monitor.ErrUnreachable) && !monitorAlive(sb) {
				s.monitorDied(ctx, sb)
				continue
			}
			return fmt.Errorf("pod %s monitor: %w", sb.ID, err)
		}
		if v < api.Protocol {
			s.logger.Info("pod monitor started by an older berth: driven with its protocol until the pod is removed",
				"pod", sb.ID, "monitor_pid", sb.MonitorPid, "protocol", v, "current", api.Protocol)
		}
		s.reconcile(ctx, sb, client)
		s.watch(ctx, sb.ID)
	}
	return nil
}

// sweepOrphans removes pod and container directories that have no record:
// what a create interrupted by a crash left behind.
func (s *Service) sweepOrphans(ctx context.Context) error {
	pods, err := os.ReadDir(s.layout().Pods())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range pods {
		id := e.Name()
		if _, err := s.store.Sandboxes.Get(id); err == nil {
			continue
		}
		dir := s.layout().Pod(id).Dir()
		if len(id) >= 16 {
			killOrphanMonitor(s.layout().MonitorSocket(id))
			_ = os.Remove(s.layout().MonitorSocket(id))
		}
		if err := s.detachOrphanNetwork(ctx, id, dir); err != nil {
			// Keep the pinned netns and config.pb for the next start's
			// try: without them nothing could release the IP and rules.
			s.logger.Warn("half-made pod not detached from its network; kept for the next start", "id", id, "error", err)
			continue
		}
		if err := s.namespaces.Remove(dir); err != nil {
			return fmt.Errorf("remove half-made pod %s: %w", id, err)
		}
		s.logger.Info("removed half-made pod sandbox", "id", id)
	}
	pauses, err := os.ReadDir(s.layout().Pauses())
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
	ctrs, err := os.ReadDir(s.layout().Containers())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ctrs {
		id := e.Name()
		if _, err := s.store.Containers.Get(id); err == nil {
			continue
		}
		c := store.Container{ID: id, Bundle: s.layout().Container(id).Dir(), SnapshotKey: id}
		if err := s.cleanupBundle(ctx, c); err != nil {
			return fmt.Errorf("remove half-made container: %w", err)
		}
		s.logger.Info("removed half-made container", "id", id)
	}
	return nil
}

// orphanPluginWait bounds how long recovery lets a dead daemon's CNI
// plugins finish their work on a half-made pod before killing them, and
// orphanDetachTimeout its CNI DEL: the gate is closed meanwhile.
const (
	orphanPluginWait    = 10 * time.Second
	orphanDetachTimeout = time.Minute
)

// detachOrphanNetwork runs CNI DEL for a half-made pod that may have been
// attached (its config was written before CNI ADD), while its network
// namespace is still pinned: the plugins find its addresses there to
// remove their rules, and release its IP. With no CNI config loadable
// nothing can run DEL, and the pod goes anyway (as detachNetwork does).
func (s *Service) detachOrphanNetwork(ctx context.Context, id, dir string) error {
	raw, err := os.ReadFile(layout.Pod(dir).Config())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cfg runtime.PodSandboxConfig
	if err := proto.Unmarshal(raw, &cfg); err != nil {
		s.logger.Warn("half-made pod's config unreadable; not detached from its network", "id", id, "error", err)
		return nil
	}
	settle, cancel := context.WithTimeout(ctx, orphanPluginWait)
	network.SettleOrphanPlugins(settle, id)
	cancel()
	m := cfg.GetMetadata()
	sb := store.Sandbox{
		ID:       id,
		Metadata: store.PodMetadata{Name: m.GetName(), UID: m.GetUid(), Namespace: m.GetNamespace(), Attempt: m.GetAttempt()},
		Paths:    store.SandboxPaths{NetNS: layout.Pod(dir).Namespace(sandbox.NetNS)},
	}
	del, cancel := context.WithTimeout(ctx, orphanDetachTimeout)
	defer cancel()
	err = s.podNetwork().Teardown(del, podNetwork(sb, &cfg))
	if errors.Is(err, network.ErrNoConfig) {
		s.logger.Warn("half-made pod not detached from its network: no CNI config", "id", id)
		return nil
	}
	return err
}

// killOrphanMonitor kills the monitor a half-made pod started, found by
// the socket it serves (the daemon may have died before it wrote the
// monitor's PID down).
func killOrphanMonitor(socket string) {
	for _, pid := range sysinfo.Processes("cmdline", socket) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.Contains(string(cmdline), "berth-monitor") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
