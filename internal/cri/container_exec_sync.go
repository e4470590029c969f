package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/runclog"
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
	code, err := s.runExec(execCtx, c, r.GetCmd(), nil, stdout, stderr)
	if errors.Is(err, errExecKilled) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("command %q timed out after %ds and was killed: %w", strings.Join(r.GetCmd(), " "), r.GetTimeout(), context.DeadlineExceeded)
	}
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}, nil
}

// errExecKilled means runExec killed the command because ctx ended.
var errExecKilled = errors.New("command killed")

// runExec runs cmd in the running container c with runc exec, stdin (may
// be nil) and stdout/stderr (stderr may be nil) wired through pipes, and
// returns its exit code. When ctx ends first the command itself is killed
// (killing runc would leave it running) and errExecKilled is returned.
func (s *Service) runExec(ctx context.Context, c store.Container, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int32, error) {
	proc, err := execProcess(c, cmd)
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp(c.Bundle, "exec-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	pio, err := runc.NewPipeIO(0, 0)
	if err != nil {
		return 0, err
	}
	defer pio.Close()
	go func() {
		if stdin != nil {
			io.Copy(pio.Stdin(), stdin)
		}
		pio.Stdin().Close()
	}()
	var copies sync.WaitGroup
	copies.Go(func() { io.Copy(stdout, pio.Stdout()) })
	if stderr == nil {
		stderr = io.Discard
	}
	copies.Go(func() { io.Copy(stderr, pio.Stderr()) })

	pidFile := filepath.Join(dir, "pid")
	rc := s.runc()
	rc.Log = filepath.Join(dir, "runc.log")
	rc.LogFormat = runc.JSON
	done := make(chan error, 1)
	go func() {
		done <- rc.Exec(context.WithoutCancel(ctx), c.ID, proc, &runc.ExecOpts{IO: pio, PidFile: pidFile})
	}()
	var execErr error
	killed := false
	select {
	case execErr = <-done:
	case <-ctx.Done():
		killed = true
		if pid, err := readPidFile(pidFile); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		execErr = <-done
	}
	// Let the copiers drain what the command wrote; a background child that
	// keeps the pipes open is cut off after a grace period.
	drained := make(chan struct{})
	go func() { copies.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		pio.Close()
		<-drained
	}
	if killed {
		return 0, errExecKilled
	}
	return execExitCode(execErr, rc.Log)
}

// execProcess is the container's process spec (user, env, cwd,
// capabilities) with cmd as its arguments.
func execProcess(c store.Container, cmd []string) (specs.Process, error) {
	sp, _, err := bundleSpec(c.Bundle)
	if err != nil {
		return specs.Process{}, fmt.Errorf("container %s: %w", c.ID, err)
	}
	p := *sp.Process
	p.Args = cmd
	p.Terminal = false
	return p, nil
}

// execExitCode turns runc exec's outcome into the command's exit code. runc
// exits 255 when it cannot start the command; that becomes 127 (not found)
// or 126 (not executable), as a shell would say.
func execExitCode(err error, runcLog string) (int32, error) {
	if err == nil {
		return 0, nil
	}
	var exitErr *runc.ExitError
	if !errors.As(err, &exitErr) {
		return 0, fmt.Errorf("runc exec: %w", err)
	}
	if exitErr.Status == 255 {
		msg := runclog.LastError(runcLog)
		switch {
		case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
			return 127, nil
		case strings.Contains(msg, "permission denied"):
			return 126, nil
		}
	}
	return int32(exitErr.Status), nil
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
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
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
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
