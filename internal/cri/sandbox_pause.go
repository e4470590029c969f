package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/ociruntime"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/store"
)

// The classic pause-container mode (runtime.pause_container): each pod also
// runs image.sandbox_image as an infra container, for tools that expect one
// (a process in the pod's cgroup, the sandbox PID in PodSandboxStatus). It
// joins the pod's pinned network, IPC and UTS namespaces — they stay pinned,
// so the pod does not depend on the pause process living — and is the init
// of the pod's PID namespace when the pod shares one. The monitor runs it
// like a container, under the pod's ID; its bundle lives in
// <state>/pause/<pod ID>, outside the pod directory, so that removing the
// pod directory can never reach into its root file system.

func (s *Service) pauseBundle(podID string) string { return s.layout().Pause(podID).Dir() }

// pauseContainer is the record cleanupBundle needs for a pod's pause
// container: the pod's ID names its monitor entry and its snapshot.
func (s *Service) pauseContainer(podID string) store.Container {
	return store.Container{ID: podID, Bundle: s.pauseBundle(podID), SnapshotKey: podID}
}

// startPauseContainer runs the sandbox image in the pod sb (whose monitor
// already runs) and returns its PID. On failure nothing is left.
func (s *Service) startPauseContainer(ctx context.Context, sb store.Sandbox, cfg *runtime.PodSandboxConfig) (_ int, retErr error) {
	ref := s.cfg.Image.SandboxImage
	img, err := s.images.Get(ref)
	if errdefs.IsNotFound(err) {
		img, err = s.images.Pull(ctx, ref, nil)
	}
	if err != nil {
		return 0, fmt.Errorf("sandbox image %s: %w", ref, err)
	}
	pc := s.pauseContainer(sb.ID)
	rootfs := layout.Bundle(pc.Bundle).Rootfs()
	pod := specPod(sb, cfg, "")
	if err := makeBundleDir(pc.Bundle, pod.GIDs); err != nil {
		return 0, err
	}
	defer func() {
		if retErr != nil {
			ctx, cancel := cleanupContext(ctx)
			defer cancel()
			if err := s.removePauseContainer(ctx, sb); err != nil {
				s.logger.Error("clean up failed pause container", "pod", sb.ID, "error", err)
			}
		}
	}()
	if err := s.images.MountRootfs(ctx, pc.SnapshotKey, img.ChainID.String(), rootfs, pod.UIDs, pod.GIDs); err != nil {
		return 0, err
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	pidMode := runtime.NamespaceMode_CONTAINER // its own; the pod's shared one when POD
	if nsOpts.GetPid() == runtime.NamespaceMode_NODE {
		pidMode = runtime.NamespaceMode_NODE
	}
	ociSpec, err := spec.Build(spec.Input{
		ID: sb.ID,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "POD"},
			Image:    &runtime.ImageSpec{Image: ref},
			Linux: &runtime.LinuxContainerConfig{
				SecurityContext: &runtime.LinuxContainerSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Network: nsOpts.GetNetwork(), Ipc: nsOpts.GetIpc(), Pid: pidMode},
					ReadonlyRootfs:   true,
					NoNewPrivs:       true,
					Capabilities:     &runtime.Capability{DropCapabilities: []string{"ALL"}},
				},
				Resources: &runtime.LinuxContainerResources{OomScoreAdj: -998},
			},
		},
		Image:              img.Config,
		Pod:                pod,
		Rootfs:             rootfs,
		CgroupDriver:       s.cgroupDriver,
		OOMScoreAdjFloor:   s.oomFloor,
		CapabilityBounding: s.capBounding,
	})
	if err != nil {
		return 0, fmt.Errorf("pause container spec: %w", err)
	}
	b, err := json.MarshalIndent(ociSpec, "", "  ")
	if err != nil {
		return 0, fmt.Errorf("encode pause container spec: %w", err)
	}
	if err := os.WriteFile(layout.Bundle(pc.Bundle).Spec(), b, 0o600); err != nil {
		return 0, err
	}
	pid, err := s.monitors.Client(sb.MonitorSocket).Start(ctx, sb.ID, pc.Bundle, monitor.StartOptions{})
	if err != nil {
		return 0, fmt.Errorf("start pause container: %w", err)
	}
	return pid, nil
}

// stopPauseContainer kills the pod's pause container, if it has one, and
// waits for the monitor to see it exit. Idempotent.
func (s *Service) stopPauseContainer(ctx context.Context, sb store.Sandbox) error {
	if !sb.PauseContainer {
		return nil
	}
	client := s.monitors.Client(sb.MonitorSocket)
	exited, stopWaiting := s.exits.wait(sb.ID)
	defer stopWaiting()
	if !pauseRunning(ctx, client, sb.ID) {
		return nil
	}
	if err := client.Kill(ctx, sb.ID, syscall.SIGKILL, true); err != nil {
		if errors.Is(err, monitor.ErrUnreachable) {
			return nil // monitorDied or RemovePodSandbox deals with it
		}
		return fmt.Errorf("kill pause container of pod %s: %w", sb.ID, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(killWait):
		if !pauseRunning(ctx, client, sb.ID) {
			return nil
		}
		return fmt.Errorf("pause container of pod %s still running %s after SIGKILL: %w", sb.ID, killWait, errdefs.ErrUnavailable)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pauseRunning asks the monitor whether the pause container runs.
func pauseRunning(ctx context.Context, client monitorClient, podID string) bool {
	states, err := client.State(ctx)
	if err != nil {
		return false
	}
	for _, c := range states {
		if c.ID == podID {
			return c.Running
		}
	}
	return false
}

// removePauseContainer forgets the stopped pause container in the monitor
// and removes its runc state, snapshot and bundle. Idempotent; also right
// for a pause container whose pod record never made it to the store.
func (s *Service) removePauseContainer(ctx context.Context, sb store.Sandbox) error {
	pc := s.pauseContainer(sb.ID)
	if _, err := os.Stat(pc.Bundle); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if sb.MonitorSocket != "" {
		if err := s.monitors.Client(sb.MonitorSocket).Delete(ctx, sb.ID); err != nil && !errors.Is(err, monitor.ErrUnreachable) {
			return fmt.Errorf("forget pause container of pod %s: %w", sb.ID, err)
		}
	}
	// Whatever the monitor could not do: the runtime's record, a process
	// left by a dead monitor. A pod never recorded may have used any
	// handler.
	runtimes := []ociruntime.Handler{s.handlerOf(sb)}
	if sb.MonitorSocket == "" {
		runtimes = s.handlerSet().All()
	}
	for _, h := range runtimes {
		_ = h.Runc().Delete(ctx, sb.ID, &runc.DeleteOpts{Force: true})
	}
	return s.cleanupBundle(ctx, pc)
}
