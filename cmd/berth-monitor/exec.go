package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/runclog"
)

// execStartTimeout bounds runc exec itself (not the command it starts).
const execStartTimeout = time.Minute

// exec runs req.Process in a running container and streams its stdio over
// conn until it exits; the last frame is its exit code or an error. The
// client hanging up kills the process: that is how a timed-out ExecSync
// ends it.
func (m *monitor) exec(conn net.Conn, in io.Reader, req api.Request) {
	fw := api.NewFrameWriter(conn)
	code, err := m.runExec(in, fw, req)
	var nr notRunningError
	if errors.As(err, &nr) {
		fw.Write(api.FrameNotRunning, []byte(err.Error()))
		return
	}
	if err != nil {
		fw.Write(api.FrameError, []byte(err.Error()))
		return
	}
	fw.WriteExit(code)
}

func (m *monitor) runExec(in io.Reader, fw *api.FrameWriter, req api.Request) (int32, error) {
	c, err := m.get(req.ID)
	if err != nil {
		return 0, notRunningError{req.ID}
	}
	if !c.state().Running {
		return 0, notRunningError{c.id}
	}
	var proc specs.Process
	if err := json.Unmarshal(req.Process, &proc); err != nil {
		return 0, fmt.Errorf("exec process: %w", err)
	}
	dir, err := os.MkdirTemp(c.bundle, layout.ExecDirPattern)
	if err != nil && !c.state().Running {
		return 0, notRunningError{c.id} // exited, its bundle being removed
	}
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), execStartTimeout)
	defer cancel()
	x := &execution{
		pidFile: filepath.Join(dir, "pid"),
		opts:    &runc.ExecOpts{Detach: true, LogFile: filepath.Join(dir, "runc.log")},
	}
	x.opts.PidFile = x.pidFile
	if proc.Terminal {
		err = x.startWithTerminal(ctx, c, proc, fw)
	} else {
		err = x.startWithPipes(ctx, c, proc, req.Stdin, fw)
	}
	defer x.close()
	if err != nil {
		var exitErr *runc.ExitError
		if errors.As(err, &exitErr) {
			if code, ok := execFailureCode(exitErr, x.opts.LogFile); ok {
				return code, nil
			}
		}
		if st := c.state(); !st.Running || processExiting(st.Pid) {
			// It exited meanwhile, or is exiting: its namespaces are gone
			// before the monitor can reap it, so the runtime's setns fails.
			return 0, notRunningError{c.id}
		}
		return 0, fmt.Errorf("runc exec: %s", runcError(x.opts.LogFile, err))
	}
	pid, err := readPid(x.pidFile)
	if err != nil {
		return 0, err
	}
	exited := m.reaper.claim(pid)
	done := make(chan struct{})
	go func() {
		readClient(in, x.stdin, x.console)
		select {
		case <-done:
		default:
			// The client went before the process ended.
			_, _ = m.reaper.signal(pid, syscall.SIGKILL)
		}
	}()
	e := <-exited
	close(done)
	// Let the copiers drain what the command wrote; a background child that
	// keeps the output open is cut off.
	drained := make(chan struct{})
	go func() { x.output.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		x.close()
	}
	return int32(e.Status), nil
}

// execution is one exec'd process's stdio.
type execution struct {
	pidFile string
	opts    *runc.ExecOpts
	stdin   *containerStdin
	console console.Console
	output  sync.WaitGroup
	closers []io.Closer
	once    sync.Once
}

func (x *execution) close() {
	x.once.Do(func() {
		for _, c := range x.closers {
			c.Close()
		}
	})
}

func (x *execution) startWithTerminal(ctx context.Context, c *container, proc specs.Process, fw *api.FrameWriter) error {
	master, err := withTerminal(func(sock runc.ConsoleSocket) error {
		x.opts.ConsoleSocket = sock
		return c.runc.Exec(ctx, c.id, proc, x.opts)
	})
	if err != nil {
		return err
	}
	x.console = master
	x.closers = append(x.closers, master)
	// The terminal stays open after the client's stdin ends: the shell
	// reads the client's end-of-file as ^D if it wants one.
	x.stdin = &containerStdin{w: master, terminal: true}
	x.output.Go(func() { copyFrames(fw, api.FrameStdout, master) })
	return nil
}

func (x *execution) startWithPipes(ctx context.Context, c *container, proc specs.Process, withStdin bool, fw *api.FrameWriter) error {
	p, err := newStdioPipes(withStdin)
	if err != nil {
		return err
	}
	if p.stdinW != nil {
		x.stdin = &containerStdin{w: p.stdinW, once: true}
		x.closers = append(x.closers, p.stdinW)
	}
	x.closers = append(x.closers, p.outR, p.errR)
	x.opts.IO = p.processIO()
	execErr := c.runc.Exec(ctx, c.id, proc, x.opts)
	p.closeProcessEnds()
	x.output.Go(func() { copyFrames(fw, api.FrameStdout, p.outR) })
	x.output.Go(func() { copyFrames(fw, api.FrameStderr, p.errR) })
	return execErr
}

// copyFrames sends what r yields as frames until it ends. A client that
// has gone does not stop the reading: the process must not block on a
// full pipe before it is killed.
func copyFrames(fw *api.FrameWriter, frame byte, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_ = fw.Write(frame, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// execFailureCode is the exit code for a command the runtime could not
// start (runc exits 255 then, crun 1), going by the error it logged: 127
// (not found) or 126 (not executable), as a shell would say.
func execFailureCode(err *runc.ExitError, runcLog string) (int32, bool) {
	if err.Status == 0 {
		return 0, false
	}
	msg := strings.ToLower(runclog.LastError(runcLog))
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "not found in $path"),
		strings.Contains(msg, "no such file or directory"):
		return 127, true
	case strings.Contains(msg, "permission denied"):
		return 126, true
	}
	return 0, false
}

// notRunningError refuses an exec or attach: the container does not run.
type notRunningError struct{ id string }

func (e notRunningError) Error() string { return fmt.Sprintf("container %s is not running", e.id) }

// pfExiting is the kernel's PF_EXITING task flag: set when do_exit begins,
// before the namespaces are released and long before the parent can reap.
const pfExiting = 0x4

// processExiting reports whether pid has begun to exit (or is gone): its
// /proc stat shows PF_EXITING, a zombie or dead state, or no longer exists.
func processExiting(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	return statExiting(string(b))
}

// statExiting parses a /proc/<pid>/stat line: "pid (comm) S ppid pgrp
// session tty tpgid flags ...". comm may hold spaces and parentheses, so the
// fields are counted from the last ')'.
func statExiting(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 7 {
		return false
	}
	switch f[0] {
	case "Z", "X", "x":
		return true
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfExiting != 0
}
