package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/store"
)

// RemovePodSandbox removes the pod's containers, its monitor, namespaces,
// mounts and directories, then its record. CRI makes it idempotent: an
// unknown sandbox is already removed. Each step tolerates having been done,
// so a remove interrupted by a crash can simply be repeated.
func (s *Service) RemovePodSandbox(ctx context.Context, r *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	sb, err := s.store.Sandboxes.Get(r.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtime.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock, err := s.lockPod(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx, cancel := detach(ctx, killWait+opTimeout)
	defer cancel()
	if sb, err = s.store.Sandboxes.Update(sb.ID, func(sb store.Sandbox) (store.Sandbox, error) {
		sb.Ready = false
		return sb, nil
	}); errdefs.IsNotFound(err) {
		return &runtime.RemovePodSandboxResponse{}, nil // removed while we waited
	} else if err != nil {
		return nil, err
	}
	for _, c := range s.podContainers(sb.ID) {
		if err := s.removeContainer(ctx, c); err != nil {
			return nil, err
		}
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
	if err := sandbox.Remove(sb.Paths.Dir); err != nil {
		return nil, fmt.Errorf("remove pod %s: %w", sb.ID, err)
	}
	if err := s.store.Sandboxes.Delete(sb.ID); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	s.logger.InfoContext(ctx, "pod sandbox removed", "id", sb.ID)
	return &runtime.RemovePodSandboxResponse{}, nil
}

// stopMonitor asks the pod's monitor to exit, or kills it if it does not
// answer, and removes its socket.
func (s *Service) stopMonitor(ctx context.Context, sb store.Sandbox) error {
	client := monitor.Client{Socket: sb.MonitorSocket}
	err := client.Shutdown(ctx)
	if err != nil && !errors.Is(err, monitor.ErrUnreachable) {
		return fmt.Errorf("shut down monitor of pod %s: %w", sb.ID, err)
	}
	if err != nil && monitorAlive(sb) {
		_ = syscallKill(sb.MonitorPid)
	}
	if err := os.Remove(sb.MonitorSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
