// Package monitor is the daemon's side of the per-pod monitor
// (cmd/berth-monitor): launching one, and calling it over its unix socket.
package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/monitor/api"
)

// LaunchOptions say how to start a pod's monitor.
type LaunchOptions struct {
	Binary   string // berth-monitor
	Socket   string
	RuncPath string
	RuncRoot string
	// LogPath receives the monitor's own log (its stderr).
	LogPath string
}

// launchTimeout bounds how long a new monitor may take to say it is ready.
const launchTimeout = 10 * time.Second

// Launch starts a monitor in its own session, so that it outlives the
// daemon, and waits until it serves. It returns the monitor's PID. On any
// failure the monitor is killed and waited for: no stray process is left.
// The caller must arrange for the process to be waited on while the daemon
// lives (Launch does so in a goroutine) so that it never lingers as a zombie.
func Launch(ctx context.Context, o LaunchOptions) (int, error) {
	logf, err := os.OpenFile(o.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("monitor log: %w", err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer readyR.Close()
	cmd := exec.Command(o.Binary, "--socket", o.Socket, "--runc", o.RuncPath, "--runc-root", o.RuncRoot)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GOMAXPROCS=1"}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return 0, fmt.Errorf("start monitor: %w", err)
	}
	readyW.Close()
	go cmd.Wait() // reap it if it exits while we live

	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(readyR).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
	}()
	timer := time.NewTimer(launchTimeout)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-timer.C:
		err = fmt.Errorf("not ready after %s", launchTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = cmd.Process.Kill()
		return 0, fmt.Errorf("monitor did not start: %v (log: %s)", err, tail(o.LogPath))
	}
	return cmd.Process.Pid, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 400 {
		s = s[len(s)-400:]
	}
	return s
}

// ErrUnreachable means the monitor's socket did not answer: the monitor is
// gone.
var ErrUnreachable = errors.New("monitor unreachable")

// Client calls one monitor. It holds no connection: each call dials.
type Client struct{ Socket string }

func (c Client) call(ctx context.Context, req api.Request) (api.Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return api.Response{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return api.Response{}, fmt.Errorf("%w: send: %v", ErrUnreachable, err)
	}
	var resp api.Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return api.Response{}, ctx.Err()
		}
		return api.Response{}, fmt.Errorf("%w: %s: %v", ErrUnreachable, req.Op, err)
	}
	if resp.Error != "" {
		switch resp.Kind {
		case api.KindLogPath:
			return resp, fmt.Errorf("%s: %w", resp.Error, ErrLogPath)
		case api.KindRunning:
			return resp, fmt.Errorf("%s: %w", resp.Error, ErrRunning)
		}
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// ErrLogPath means the container's log file could not be opened.
var ErrLogPath = errors.New("log file not usable")

// ErrRunning means the monitor still runs the container.
var ErrRunning = errors.New("container still running")

// StartOptions are a container's stdio choices.
type StartOptions struct {
	LogPath string // the CRI log file ("" for none)
	LogRoot string // the pod's log directory, which LogPath must stay in
	// Stdin keeps the container's stdin open for Attach; StdinOnce closes
	// it when the first attached client's stdin ends.
	Stdin, StdinOnce bool
}

// Start runs the container in bundle and returns its PID.
func (c Client) Start(ctx context.Context, id, bundle string, o StartOptions) (int, error) {
	resp, err := c.call(ctx, api.Request{Op: api.OpStart, ID: id, Bundle: bundle, LogPath: o.LogPath, LogRoot: o.LogRoot, Stdin: o.Stdin, StdinOnce: o.StdinOnce})
	if resp.AlreadyStarted {
		return 0, fmt.Errorf("container %s: %w", id, ErrAlreadyStarted)
	}
	return resp.Pid, err
}

// ErrAlreadyStarted means the monitor had started the container before:
// a start the daemon did not record (it died mid-StartContainer).
var ErrAlreadyStarted = errors.New("already started by the monitor")

// Kill sends sig to the container's init, or to all its processes.
func (c Client) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	_, err := c.call(ctx, api.Request{Op: api.OpKill, ID: id, Signal: int(sig), All: all})
	return err
}

// Delete forgets an exited container.
func (c Client) Delete(ctx context.Context, id string) error {
	_, err := c.call(ctx, api.Request{Op: api.OpDelete, ID: id})
	return err
}

// Reopen reopens the container's log at logPath, beneath logRoot.
func (c Client) Reopen(ctx context.Context, id, logPath, logRoot string) error {
	_, err := c.call(ctx, api.Request{Op: api.OpReopen, ID: id, LogPath: logPath, LogRoot: logRoot})
	return err
}

// State lists the containers the monitor knows.
func (c Client) State(ctx context.Context) ([]api.Container, error) {
	resp, err := c.call(ctx, api.Request{Op: api.OpState})
	return resp.Containers, err
}

// Protocol is the protocol version the monitor speaks (api.Protocol for
// one of this build; 1 for monitors that predate versioning).
func (c Client) Protocol(ctx context.Context) (int, error) {
	resp, err := c.call(ctx, api.Request{Op: api.OpState})
	if err != nil {
		return 0, err
	}
	return max(resp.Protocol, 1), nil
}

// SettledState is State once the starts in progress have finished (up to
// the monitor's bound), so that every started container has its PID.
func (c Client) SettledState(ctx context.Context) ([]api.Container, error) {
	resp, err := c.call(ctx, api.Request{Op: api.OpState, Settle: true})
	return resp.Containers, err
}

// Pause starts the init of the pod's shared PID namespace and returns its
// PID; repeated calls return the same process.
func (c Client) Pause(ctx context.Context) (int, error) {
	resp, err := c.call(ctx, api.Request{Op: api.OpPause})
	return resp.Pid, err
}

// Shutdown asks the monitor to exit; it refuses while a container runs.
func (c Client) Shutdown(ctx context.Context) error {
	_, err := c.call(ctx, api.Request{Op: api.OpShutdown})
	return err
}

// open dials the monitor and sends req, for an exchange that lasts: ctx
// ending closes the connection (for an exec, that kills the process). done
// releases it.
func (c Client) open(ctx context.Context, req api.Request) (conn net.Conn, done func(), err error) {
	var d net.Dialer
	conn, err = d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	done = func() { stop(); conn.Close() }
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		done()
		return nil, nil, fmt.Errorf("%w: send: %v", ErrUnreachable, err)
	}
	return conn, done, nil
}

// Events streams exit events to fn until ctx ends or the monitor goes
// away; it returns ErrUnreachable in the latter case. subscribed, if not
// nil, is called once the monitor has registered the subscription: no exit
// after that moment is missed.
func (c Client) Events(ctx context.Context, subscribed func(), fn func(api.Event)) error {
	conn, done, err := c.open(ctx, api.Request{Op: api.OpEvents})
	if err != nil {
		return err
	}
	defer done()
	dec := json.NewDecoder(conn)
	for {
		var ev api.Event
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
				return ErrUnreachable
			}
			return fmt.Errorf("%w: %v", ErrUnreachable, err)
		}
		if ev.ID == "" {
			if subscribed != nil {
				subscribed()
			}
			continue
		}
		fn(ev)
	}
}

// ReadExit reads a container's exit record from its bundle; ok is false
// when the container has not exited (no record).
func ReadExit(bundle string) (api.Exit, bool, error) {
	b, err := os.ReadFile(layout.Bundle(bundle).Exit())
	if errors.Is(err, os.ErrNotExist) {
		return api.Exit{}, false, nil
	}
	if err != nil {
		return api.Exit{}, false, err
	}
	var e api.Exit
	if err := json.Unmarshal(b, &e); err != nil {
		return api.Exit{}, false, fmt.Errorf("exit record %s: %w", bundle, err)
	}
	return e, true, nil
}
