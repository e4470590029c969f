package cri

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-cri/berth/internal/metrics"

	"github.com/containerd/errdefs"
	nriapi "github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/store"
)

// StartContainer has the pod's monitor run the container. A container that
// fails to start is recorded as exited with reason StartError. A caller
// that gives up does not stop the start: the record says how it ended, and
// a repeated call answers from it.
func (s *Service) StartContainer(ctx context.Context, r *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	c, ctx, release, err := s.holdContainer(ctx, r.GetContainerId(), opTimeout)
	if err != nil {
		return nil, err
	}
	defer release()
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
	// Plugins hear of the start before it is made, and may veto it; none
	// synchronizes between their hearing and the record.
	unblock := s.nri.BlockSync()
	defer unblock()
	var pod *nriapi.PodSandbox
	var sp *specs.Spec // read once for both of the start's events
	if s.nri.Enabled() {
		pod = nriPod(sb)
		sp, _, _ = bundleSpec(c.Bundle)
		if err := s.nri.StartContainer(ctx, pod, nriContainer(c, sp)); err != nil {
			unblock()
			return nil, s.recordStartError(c, nriRefused("the start", err), nil)
		}
	}
	started := time.Now().UTC()
	client := s.monitors.Client(sb.MonitorSocket)
	endPhase := s.phase(ctx, metrics.PhaseRuntimeStart)
	pid, err := client.Start(ctx, c.ID, c.Bundle, monitor.StartOptions{
		LogPath: c.LogFile, LogRoot: podLogDirectory(sb), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
	})
	endPhase()
	if err != nil {
		if err := s.startFailed(ctx, c, err); err != nil {
			return nil, err
		}
		return &runtime.StartContainerResponse{}, nil // started after all
	}
	running, err := s.store.Containers.Update(c.ID, func(c store.Container) (store.Container, error) {
		c.Pid = pid
		if c.StartedAt.IsZero() {
			c.StartedAt = started
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	unblock()
	if pod != nil {
		if err := s.nri.PostStartContainer(ctx, pod, nriContainer(running, sp)); err != nil {
			s.logger.WarnContext(ctx, "nri: PostStartContainer", "id", c.ID, "error", err)
		}
	}
	s.logger.InfoContext(ctx, "container started", "id", c.ID, "pid", pid)
	return &runtime.StartContainerResponse{}, nil
}

// startFailed settles a start the monitor did not confirm, from what the
// monitor knows, and records it. A start the monitor made (before a daemon
// crash, or while this call's answer was lost) is recorded as started. A
// start the monitor may still make (it is unreachable, or still busy) is
// left recorded as created, which the exit watcher or a monitor's death
// settles. Only a start the monitor refused is recorded as a StartError.
func (s *Service) startFailed(ctx context.Context, c store.Container, startErr error) error {
	switch {
	case errors.Is(startErr, monitor.ErrUnreachable):
		return fmt.Errorf("start container %s: %w: %w", c.ID, startErr, errdefs.ErrUnavailable)
	case errors.Is(startErr, monitor.ErrAlreadyStarted) || ctx.Err() != nil:
		settle, cancel := cleanupContext(ctx)
		defer cancel()
		if c = s.settleUnrecordedStart(settle, c); c.State() != store.ContainerCreated {
			return nil
		}
		return fmt.Errorf("container %s is still being started: %w", c.ID, errdefs.ErrUnavailable)
	}
	if errors.Is(startErr, monitor.ErrLogPath) {
		return s.recordStartError(c, startErr, fmt.Errorf("start container %s: config.log_path: %w: %w", c.ID, startErr, errdefs.ErrFailedPrecondition))
	}
	// The runtime refused the container as configured (a command that is
	// not there, a mount it cannot make): the container cannot run.
	return s.recordStartError(c, startErr, fmt.Errorf("start container %s: %w: %w", c.ID, startErr, errdefs.ErrFailedPrecondition))
}

// recordStartError records a container that did not start as exited with
// reason StartError and returns callErr (startErr when nil), the call's
// answer.
func (s *Service) recordStartError(c store.Container, startErr, callErr error) error {
	if callErr == nil {
		callErr = startErr
	}
	exit := api.Exit{Code: 128, FinishedAt: time.Now().UTC()}
	if err := s.finishContainer(c.ID, exit, reasonStartError, startErr.Error()); err != nil {
		return fmt.Errorf("record start failure of container %s: %w", c.ID, err)
	}
	s.exits.notify(c.ID)
	return callErr
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
