package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/store"
)

// maxExecOutput caps what ExecSync captures per stream, so a chatty command
// cannot exhaust the daemon's memory.
const maxExecOutput = 16 << 20

// ExecSync runs a command in a running container and returns its output
// and exit code. A timeout kills the command and is reported as an error.
func (s *Service) ExecSync(ctx context.Context, r *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	if len(r.GetCmd()) == 0 {
		return nil, fmt.Errorf("cmd must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.store.Containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State() != store.ContainerRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	execCtx := ctx
	if t := r.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		execCtx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	stdout, stderr := &cappedBuffer{max: maxExecOutput}, &cappedBuffer{max: maxExecOutput}
	code, err := s.execInContainer(execCtx, c, r.GetCmd(), false, monitor.Stdio{Stdout: stdout, Stderr: stderr})
	if err != nil && execCtx.Err() != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("command %q timed out after %ds and was killed: %w", strings.Join(r.GetCmd(), " "), r.GetTimeout(), context.DeadlineExceeded)
	}
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}, nil
}

// execInContainer has the pod's monitor run cmd in the running container c
// (with a pty when tty) wired to stdio, and returns its exit code. When ctx
// ends first the monitor kills the command.
func (s *Service) execInContainer(ctx context.Context, c store.Container, cmd []string, tty bool, stdio monitor.Stdio) (int32, error) {
	sb, err := s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return 0, fmt.Errorf("pod of container %s: %w", c.ID, err)
	}
	proc, err := execProcess(c, cmd, tty)
	if err != nil {
		return 0, err
	}
	code, err := s.monitors.Client(sb.MonitorSocket).Exec(ctx, c.ID, proc, stdio)
	if errors.Is(err, monitor.ErrUnreachable) {
		return 0, fmt.Errorf("exec in container %s: %w: %w", c.ID, err, errdefs.ErrUnavailable)
	}
	if errors.Is(err, monitor.ErrNotRunning) {
		return 0, fmt.Errorf("exec in container %s: %w: %w", c.ID, err, errdefs.ErrFailedPrecondition)
	}
	return code, err
}

// execProcess is the container's process spec (user, env, cwd,
// capabilities) with cmd as its arguments; with a terminal, TERM is set
// as containerd sets it.
func execProcess(c store.Container, cmd []string, tty bool) (specs.Process, error) {
	sp, _, err := bundleSpec(c.Bundle)
	if err != nil {
		return specs.Process{}, fmt.Errorf("container %s: %w", c.ID, err)
	}
	p := *sp.Process
	p.Args = cmd
	p.Terminal = tty
	p.ConsoleSize = nil
	if tty && !slices.ContainsFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		p.Env = append(slices.Clone(p.Env), "TERM=xterm")
	}
	return p, nil
}

// cappedBuffer keeps the first max bytes written and discards the rest.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// bundleSpec reads the OCI spec in a container's bundle, returning it parsed
// and raw (for verbose status).
func bundleSpec(bundle string) (*specs.Spec, []byte, error) {
	b, err := os.ReadFile(layout.Bundle(bundle).Spec())
	if err != nil {
		return nil, nil, fmt.Errorf("read runtime spec: %w", err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, nil, fmt.Errorf("decode runtime spec: %w", err)
	}
	if sp.Process == nil {
		return nil, nil, fmt.Errorf("runtime spec has no process")
	}
	return &sp, b, nil
}
