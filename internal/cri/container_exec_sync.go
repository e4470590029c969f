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
	proc, err := execProcess(c, r.GetCmd())
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(c.Bundle, "exec-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	stdout, stderr := &cappedBuffer{max: maxExecOutput}, &cappedBuffer{max: maxExecOutput}
	pio, err := runc.NewPipeIO(0, 0)
	if err != nil {
		return nil, err
	}
	defer pio.Close()
	pio.Stdin().Close()
	var copies sync.WaitGroup
	copies.Go(func() { io.Copy(stdout, pio.Stdout()) })
	copies.Go(func() { io.Copy(stderr, pio.Stderr()) })

	execCtx := ctx
	if t := r.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		execCtx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	pidFile := filepath.Join(dir, "pid")
	rc := s.runc()
	rc.Log = filepath.Join(dir, "runc.log")
	rc.LogFormat = runc.JSON
	done := make(chan error, 1)
	go func() {
		// Not execCtx: killing runc would leave the command running. The
		// timeout kills the command itself, below.
		done <- rc.Exec(context.WithoutCancel(ctx), c.ID, proc, &runc.ExecOpts{IO: pio, PidFile: pidFile})
	}()
	var execErr error
	timedOut := false
	select {
	case execErr = <-done:
	case <-execCtx.Done():
		timedOut = true
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
	if timedOut {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("command %q timed out after %ds and was killed: %w", strings.Join(r.GetCmd(), " "), r.GetTimeout(), context.DeadlineExceeded)
	}
	code, err := execExitCode(execErr, rc.Log)
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}, nil
}

// execProcess is the container's process spec (user, env, cwd,
// capabilities) with cmd as its arguments.
func execProcess(c store.Container, cmd []string) (specs.Process, error) {
	b, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		return specs.Process{}, fmt.Errorf("read spec of container %s: %w", c.ID, err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil || sp.Process == nil {
		return specs.Process{}, fmt.Errorf("spec of container %s: %v", c.ID, err)
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
