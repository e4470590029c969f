package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/store"
)

// RemovePodSandbox removes the pod's containers, its monitor, namespaces,
// mounts and directories, then its record. CRI makes it idempotent: an
// unknown sandbox is already removed. Each step tolerates having been done,
// so a remove interrupted by a crash can simply be repeated.
func (s *Service) RemovePodSandbox(ctx context.Context, r *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	sb, ctx, release, err := s.holdPodToStop(ctx, r.GetPodSandboxId(), killWait+opTimeout)
	if errdefs.IsNotFound(err) {
		return &runtime.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer release()
	for _, c := range s.podContainers(sb.ID) {
		if err := s.removeContainer(ctx, c, false); err != nil {
			return nil, err
		}
	}
	// Containers removed before have their files cleaned up by now.
	if err := s.cleanups.finish(ctx, s, sb.ID); err != nil {
		return nil, fmt.Errorf("files of removed containers of pod %s: %w", sb.ID, err)
	}
	// A pod removed without a stop, or after a restart, still releases
	// its IP and rules.
	if err := s.detachNetwork(ctx, sb); err != nil {
		return nil, err
	}
	if err := s.stopPauseContainer(ctx, sb); err != nil {
		return nil, err
	}
	if err := s.removePauseContainer(ctx, sb); err != nil {
		return nil, err
	}
	if err := s.stopMonitor(ctx, sb); err != nil {
		return nil, err
	}
	if err := s.namespaces.Remove(sb.Paths.Dir); err != nil {
		return nil, fmt.Errorf("remove pod %s: %w", sb.ID, err)
	}
	if err := s.store.Sandboxes.Delete(sb.ID); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	if s.nri.Enabled() {
		if err := s.nri.RemovePodSandbox(ctx, nriPod(sb)); err != nil {
			s.logger.WarnContext(ctx, "nri: RemovePodSandbox", "id", sb.ID, "error", err)
		}
	}
	s.retiring.remove(sb.ID)
	s.logger.InfoContext(ctx, "pod sandbox removed", "id", sb.ID)
	return &runtime.RemovePodSandboxResponse{}, nil
}

// stopMonitor asks the pod's monitor to exit, or kills it if it does not
// answer, and removes its socket.
func (s *Service) stopMonitor(ctx context.Context, sb store.Sandbox) error {
	// Kept until the record is gone (a failed remove keeps it): the
	// pod's watcher must not take this exit for a death.
	s.retiring.add(sb.ID)
	client := s.monitors.Client(sb.MonitorSocket)
	err := client.Shutdown(ctx)
	if err != nil && !errors.Is(err, monitor.ErrUnreachable) {
		return fmt.Errorf("shut down monitor of pod %s: %w", sb.ID, err)
	}
	if err != nil && monitorAlive(sb) {
		_ = syscallKill(sb.MonitorPid)
	}
	// The monitor exits after it answers: a removed pod is one whose
	// monitor is gone, not going.
	if err := waitMonitorExit(ctx, sb); err != nil {
		return fmt.Errorf("monitor of pod %s: %w", sb.ID, err)
	}
	if err := os.Remove(sb.MonitorSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// monitorExitWait bounds how long a monitor that was told to exit (or
// killed) may take to go before it is killed (again).
const monitorExitWait = 10 * time.Second

// waitMonitorExit waits until the pod's monitor process has exited,
// killing it if it takes longer than monitorExitWait. A pidfd names the
// process itself, so a reused PID is never waited for or killed.
func waitMonitorExit(ctx context.Context, sb store.Sandbox) error {
	if sb.MonitorPid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(sb.MonitorPid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", sb.MonitorPid, err)
	}
	defer unix.Close(fd)
	if !monitorAlive(sb) {
		return nil // the PID is someone else's now (or a zombie of ours)
	}
	deadline := time.Now().Add(monitorExitWait)
	killed := false
	for {
		wait := time.Until(deadline)
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			wait = time.Until(d)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(max(wait, 0).Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for monitor %d: %w", sb.MonitorPid, err)
		}
		if n > 0 {
			return nil // exited (a zombie of ours is reaped by Launch's Wait)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if killed {
			return fmt.Errorf("monitor %d still there %s after SIGKILL: %w", sb.MonitorPid, monitorExitWait, errdefs.ErrUnavailable)
		}
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		killed = true
		deadline = time.Now().Add(monitorExitWait)
	}
}
