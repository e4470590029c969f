package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/beneath"
	"github.com/berth-cri/berth/internal/cgroup"
	"github.com/berth-cri/berth/internal/crilog"
	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/runclog"
)

// errAlreadyStarted answers a start of a container the monitor has started
// before (a daemon that died mid-StartContainer may ask again).
var errAlreadyStarted = errors.New("already started")

// settleTimeout bounds how long a settling State waits for starts in
// progress.
const settleTimeout = 10 * time.Second

// drainTimeout bounds how long an exit waits for the container's output
// pipes to close: a daemonised grandchild can hold them open forever.
const drainTimeout = 2 * time.Second

// container is one container the monitor started.
type container struct {
	id     string
	bundle string
	runc   *runc.Runc
	// started is closed once runc run has returned, whether it started
	// the container or not: until then there is no PID to signal.
	started chan struct{}
	log     *crilog.File   // nil when the container has no log path
	output  sync.WaitGroup // the stdout and stderr copiers
	// facts from the spec: with a PID namespace of its own, killing init
	// kills every process, no runc kill --all needed.
	facts bundleFacts
	// exited is closed once the exit is recorded and the output drained:
	// attached clients have seen everything the container wrote.
	exited chan struct{}

	// The stdio the monitor keeps for Attach.
	console  console.Console // a terminal container's pty master; nil otherwise
	stdin    *containerStdin // nil when the container was not created with stdin
	attached attachHub

	mu   sync.Mutex
	pid  int       // the init process, 0 until started; guarded by mu
	exit *api.Exit // set once the init process has exited; guarded by mu
}

func (c *container) state() api.Container {
	c.mu.Lock()
	defer c.mu.Unlock()
	return api.Container{ID: c.id, Pid: c.pid, Running: c.exit == nil, Exit: c.exit}
}

// monitor owns a pod's containers.
type monitor struct {
	runcPath, runcRoot string
	reaper             *reaper
	logger             *slog.Logger

	mu          sync.Mutex
	containers  map[string]*container // guarded by mu
	subscribers map[chan api.Event]bool
	// releasing counts containers whose runtime state and cgroup are not
	// yet deleted; Shutdown waits for it.
	releasing sync.WaitGroup
	pausePid  int // the shared PID namespace's init, 0 if none; guarded by mu
	// pauseLifeline is the write end of the pause process's lifeline pipe;
	// guarded by mu.
	pauseLifeline *os.File
}

// start creates and starts a container from its bundle with runc, its
// stdout and stderr on pipes the monitor copies into the CRI log.
func (m *monitor) start(ctx context.Context, req api.Request) (int, error) {
	if req.ID == "" || req.Bundle == "" {
		return 0, errors.New("start needs id and bundle")
	}
	m.mu.Lock()
	if _, ok := m.containers[req.ID]; ok {
		m.mu.Unlock()
		return 0, fmt.Errorf("container %s: %w", req.ID, errAlreadyStarted)
	}
	c := &container{
		id:      req.ID,
		bundle:  req.Bundle,
		facts:   readBundleFacts(req.Bundle),
		started: make(chan struct{}),
		exited:  make(chan struct{}),
		runc: &runc.Runc{
			Command:   m.runcPath,
			Root:      m.runcRoot,
			Log:       layout.Bundle(req.Bundle).RuntimeLog(),
			LogFormat: runc.JSON,
		},
	}
	m.containers[req.ID] = c
	m.mu.Unlock()

	pid, err := m.create(ctx, c, req)
	if err != nil {
		// Gone from the map before the waiters wake: a failed start is never
		// reported as running.
		m.mu.Lock()
		delete(m.containers, req.ID)
		m.mu.Unlock()
		close(c.started)
		_ = c.runc.Delete(context.WithoutCancel(ctx), c.id, &runc.DeleteOpts{Force: true})
		if c.log != nil {
			c.log.Close()
		}
		c.closeStdio()
		return 0, err
	}
	close(c.started)
	return pid, nil
}

func (m *monitor) create(ctx context.Context, c *container, req api.Request) (int, error) {
	var logFile io.WriteCloser = discard{}
	if req.LogPath != "" {
		f, err := openLog(req)
		if err != nil {
			return 0, err
		}
		logFile = f
	}
	c.log = crilog.NewFile(logFile)
	pidFile := layout.Bundle(c.bundle).InitPid()
	var err error
	if c.facts.terminal {
		err = m.createWithTerminal(ctx, c, req, pidFile)
	} else {
		err = m.createWithPipes(ctx, c, req, pidFile)
	}
	if err != nil {
		return 0, err
	}
	pid, err := readPid(pidFile)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.pid = pid
	c.mu.Unlock()
	// The process may have exited already: the reaper keeps that exit for
	// this claim.
	m.releasing.Add(1)
	go m.waitExit(c, m.reaper.claim(pid))
	return pid, nil
}

// createWithPipes runs the container (runc run --detach) with the container's stdout and stderr
// on pipes the monitor copies, and stdin on a pipe the monitor keeps for
// Attach when the container asked for stdin (else /dev/null).
func (m *monitor) createWithPipes(ctx context.Context, c *container, req api.Request, pidFile string) error {
	p, err := newStdioPipes(req.Stdin)
	if err != nil {
		return err
	}
	if p.stdinW != nil {
		c.stdin = &containerStdin{w: p.stdinW, once: req.StdinOnce}
	}
	_, createErr := c.runc.Run(ctx, c.id, c.bundle, &runc.CreateOpts{IO: p.processIO(), PidFile: pidFile, Detach: true})
	// The container holds its own copies of its ends now; ours must go so
	// that the copiers see EOF when the container exits.
	p.closeProcessEnds()
	c.output.Add(2)
	go func() {
		defer c.output.Done()
		defer p.outR.Close()
		m.copyOutput(c, crilog.Stdout, api.FrameStdout, p.outR)
	}()
	go func() {
		defer c.output.Done()
		defer p.errR.Close()
		m.copyOutput(c, crilog.Stderr, api.FrameStderr, p.errR)
	}()
	if createErr != nil {
		return fmt.Errorf("runc run: %s", runcError(c.runc.Log, createErr))
	}
	return nil
}

// stdioPipes are a process's stdio without a terminal: stdin from
// /dev/null, or from a pipe whose write end the monitor keeps; stdout and
// stderr into pipes whose read ends the monitor copies.
type stdioPipes struct {
	stdin, stdinW *os.File // stdinW is nil without stdin
	outR, outW    *os.File
	errR, errW    *os.File
}

func newStdioPipes(withStdin bool) (*stdioPipes, error) {
	p := &stdioPipes{}
	var err error
	if withStdin {
		p.stdin, p.stdinW, err = os.Pipe()
	} else {
		p.stdin, err = os.Open(os.DevNull)
	}
	if err != nil {
		return nil, err
	}
	if p.outR, p.outW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	if p.errR, p.errW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// processIO hands runc the process's ends.
func (p *stdioPipes) processIO() *pipeIO {
	return &pipeIO{stdin: p.stdin, stdout: p.outW, stderr: p.errW}
}

// closeProcessEnds closes our copies of the process's ends.
func (p *stdioPipes) closeProcessEnds() {
	for _, f := range []*os.File{p.stdin, p.outW, p.errW} {
		f.Close()
	}
}

func (p *stdioPipes) close() {
	for _, f := range []*os.File{p.stdin, p.stdinW, p.outR, p.outW, p.errR, p.errW} {
		if f != nil {
			f.Close()
		}
	}
}

// createWithTerminal runs the container (runc run --detach) with a pty, whose master runc hands
// over on a console socket. The terminal's output is the container's
// stdout; its input takes attached stdin.
func (m *monitor) createWithTerminal(ctx context.Context, c *container, req api.Request, pidFile string) error {
	master, err := withTerminal(func(sock runc.ConsoleSocket) error {
		if _, err := c.runc.Run(ctx, c.id, c.bundle, &runc.CreateOpts{ConsoleSocket: sock, PidFile: pidFile, Detach: true}); err != nil {
			return fmt.Errorf("runc run: %s", runcError(c.runc.Log, err))
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.console = master
	if req.Stdin {
		c.stdin = &containerStdin{w: master, terminal: true}
	}
	c.output.Add(1)
	go func() { defer c.output.Done(); m.copyOutput(c, crilog.Stdout, api.FrameStdout, master) }()
	return nil
}

// withTerminal runs start, which starts a process with a pty, with the
// console socket on which the runtime hands over the pty's master, and
// returns that master. start's error is returned as it is.
func withTerminal(start func(runc.ConsoleSocket) error) (console.Console, error) {
	sock, err := runc.NewTempConsoleSocket()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer sock.Close()
	if err := start(sock); err != nil {
		return nil, err
	}
	master, err := sock.ReceiveMaster()
	if err != nil {
		return nil, fmt.Errorf("receive the terminal: %w", err)
	}
	return master, nil
}

// copyOutput writes what the container prints on r to its log and to the
// clients attached to it.
func (m *monitor) copyOutput(c *container, stream string, frame byte, r io.Reader) {
	if err := c.log.Copy(stream, teeReader{r: r, frame: frame, hub: &c.attached}); err != nil {
		m.logger.Warn("container log", "id", c.id, "stream", stream, "error", err)
	}
}

// waitExit records the container's exit: drain its output, check for an
// OOM kill, write the exit file, tell subscribers, then release the
// runtime's state and the cgroup. The caller has counted it in releasing.
func (m *monitor) waitExit(c *container, exited chan runc.Exit) {
	defer m.releasing.Done()
	e := <-exited
	drained := make(chan struct{})
	go func() { c.output.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		m.logger.Warn("container output still open after exit; a child may hold it", "id", c.id)
	}
	exit := api.Exit{Code: int32(e.Status), FinishedAt: e.Timestamp.UTC()}
	if e.Status > 128 {
		exit.Signal = e.Status - 128
	}
	exit.OOMKilled = oomKilled(c.facts.cgroupsPath)
	if err := writeJSONAtomic(layout.Bundle(c.bundle).Exit(), exit); err != nil {
		m.logger.Error("write exit record", "id", c.id, "error", err)
	}
	c.mu.Lock()
	c.exit = &exit
	c.mu.Unlock()
	close(c.exited)
	c.log.Close()
	c.closeStdio()
	m.logger.Info("container exited", "id", c.id, "code", exit.Code, "oom", exit.OOMKilled)
	// The exit is durable now: report it before the runtime's cleanup,
	// which neither the stopping nor the removing client waits for;
	// Shutdown does.
	m.publish(api.Event{ID: c.id, Exit: exit})
	m.release(c)
}

// release deletes the exited container's runtime state and cgroup, and
// unmounts its root file system: nothing uses an exited container's, and
// unmounting here takes it off RemoveContainer's path (which unmounts
// whatever is left, and removes the snapshot; a container never runs
// twice). The runtime logs to the monitor's log here, not the bundle's: the
// daemon may be removing the bundle meanwhile.
func (m *monitor) release(c *container) {
	rc := *c.runc
	rc.Log = ""
	// Its init has exited: a plain delete suffices, and current runc's
	// --force costs 100 ms even then (it waits for a kill to land). Force
	// only when processes of the container still run.
	if err := rc.Delete(context.Background(), c.id, &runc.DeleteOpts{}); err != nil {
		if err := rc.Delete(context.Background(), c.id, &runc.DeleteOpts{Force: true}); err != nil {
			m.logger.Warn("runtime delete after exit", "id", c.id, "error", err)
		}
	}
	// The runtime gives up on a cgroup whose last task is still dying under
	// load; finish its job rather than leak the cgroup.
	if err := cgroup.Remove(c.facts.cgroupsPath); err != nil {
		m.logger.Warn("container cgroup not removed", "id", c.id, "error", err)
	}
	// After the runtime's delete: its poststop hooks may read the rootfs.
	switch err := unix.Unmount(layout.Bundle(c.bundle).Rootfs(), 0); {
	case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
	case errors.Is(err, unix.EBUSY):
		m.logger.Info("root file system still busy after exit; RemoveContainer unmounts it", "id", c.id)
	default:
		m.logger.Warn("unmount root file system after exit", "id", c.id, "error", err)
	}
}

func (m *monitor) publish(ev api.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subscribers {
		select {
		case ch <- ev:
		default:
			// A subscriber that does not keep up is cut off rather than
			// silently miss an exit: the daemon subscribes again and
			// reconciles from State.
			delete(m.subscribers, ch)
			close(ch)
			m.logger.Warn("events subscriber fell behind; cut off")
		}
	}
}

func (m *monitor) get(id string) (*container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s not found", id)
	}
	return c, nil
}

func (m *monitor) kill(ctx context.Context, req api.Request) error {
	c, err := m.get(req.ID)
	if err != nil {
		return err
	}
	// A container still being started has no PID yet (and kill(0) would
	// signal the monitor's own process group): wait for runc run.
	select {
	case <-c.started:
	case <-ctx.Done():
		return fmt.Errorf("container %s is still starting: %w", c.id, ctx.Err())
	}
	st := c.state()
	if !st.Running || st.Pid <= 0 {
		return nil // exited, or its start failed
	}
	// The reaper signals init only while it is unreaped: the PID of an
	// exit being drained may already be another process's. Killing init
	// ends a container with its own PID namespace; --all reaches the rest
	// when it shares one.
	alive, err := m.reaper.signal(st.Pid, syscall.Signal(req.Signal))
	if err != nil {
		return fmt.Errorf("kill %d: %w", st.Pid, err)
	}
	if !alive {
		return nil // exited; its exit is being recorded
	}
	if req.All && !c.facts.ownPIDNS {
		if err := c.runc.Kill(ctx, c.id, req.Signal, &runc.KillOpts{All: true}); err != nil && c.state().Running && processAlive(st.Pid) {
			return fmt.Errorf("runc kill --all: %s", runcError(c.runc.Log, err))
		}
	}
	return nil
}

// processAlive reports whether pid exists and is not a zombie awaiting
// our reaper.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func (m *monitor) delete(req api.Request) error {
	c, err := m.get(req.ID)
	if err != nil {
		return nil // already gone
	}
	if c.state().Running {
		return runningError{c.id}
	}
	m.mu.Lock()
	delete(m.containers, req.ID)
	m.mu.Unlock()
	return nil
}

func (m *monitor) reopen(req api.Request) error {
	c, err := m.get(req.ID)
	if err != nil {
		return err
	}
	if !c.state().Running {
		return fmt.Errorf("container %s is not running", c.id)
	}
	if req.LogPath == "" {
		return errors.New("reopen needs log_path")
	}
	f, err := openLog(req)
	if err != nil {
		return err
	}
	return c.log.Swap(f)
}

// logPathError is a log file that could not be opened: the daemon tells
// its client which field is at fault.
type logPathError struct{ err error }

func (e logPathError) Error() string { return "open log: " + e.err.Error() }
func (e logPathError) Unwrap() error { return e.err }

// openLog opens (creating) a container's CRI log file, and the directories
// it needs, beneath the pod's log directory when the daemon names it
// (0755, as containerd makes them).
func openLog(req api.Request) (*os.File, error) {
	const flag = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	var f *os.File
	var err error
	if req.LogRoot == "" {
		f, err = os.OpenFile(req.LogPath, flag, 0o640)
	} else if rel, rerr := filepath.Rel(req.LogRoot, req.LogPath); rerr != nil {
		err = rerr
	} else {
		f, err = beneath.OpenFile(req.LogRoot, rel, flag, 0o640, 0o755)
	}
	if err != nil {
		return nil, logPathError{err}
	}
	return f, nil
}

func (m *monitor) states() []api.Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]api.Container, 0, len(m.containers))
	for _, c := range m.containers {
		out = append(out, c.state())
	}
	return out
}

// settledStates is states once the starts in progress have finished (or
// ctx ends), so that every running container has its PID: a daemon that
// died mid-StartContainer learns from it what its record missed.
func (m *monitor) settledStates(ctx context.Context) []api.Container {
	m.mu.Lock()
	starting := make([]chan struct{}, 0, len(m.containers))
	for _, c := range m.containers {
		starting = append(starting, c.started)
	}
	m.mu.Unlock()
	for _, ch := range starting {
		select {
		case <-ch:
		case <-ctx.Done():
			return m.states()
		}
	}
	return m.states()
}

func (m *monitor) running() int {
	n := 0
	for _, c := range m.states() {
		if c.Running {
			n++
		}
	}
	return n
}

// bundleFacts is what the monitor needs from a bundle's spec, read once
// at start: whether the container has a PID namespace of its own, and its
// cgroup (for the OOM-kill counter after exit).
type bundleFacts struct {
	ownPIDNS    bool
	cgroupsPath string
	terminal    bool // the process wants a pty
}

func readBundleFacts(bundle string) bundleFacts {
	var spec struct {
		Process struct {
			Terminal bool `json:"terminal"`
		} `json:"process"`
		Linux struct {
			CgroupsPath string                        `json:"cgroupsPath"`
			Namespaces  []struct{ Type, Path string } `json:"namespaces"`
		} `json:"linux"`
	}
	b, err := os.ReadFile(layout.Bundle(bundle).Spec())
	if err != nil || json.Unmarshal(b, &spec) != nil {
		return bundleFacts{}
	}
	f := bundleFacts{cgroupsPath: spec.Linux.CgroupsPath, terminal: spec.Process.Terminal}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == "pid" {
			f.ownPIDNS = ns.Path == ""
		}
	}
	return f
}

// oomKilled reports whether the kernel's OOM killer acted in the cgroup at
// path (cgroup v1 memory.oom_control, v2 memory.events). Read before runc
// delete removes the cgroup. A systemd-driver path ("slice:prefix:name")
// is resolved by runc and not tracked here.
func oomKilled(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	for _, f := range []struct{ file, key string }{
		{"/sys/fs/cgroup/memory" + path + "/memory.oom_control", "oom_kill"},
		{"/sys/fs/cgroup" + path + "/memory.events", "oom_kill"},
	} {
		if n := cgroupCounter(f.file, f.key); n > 0 {
			return true
		}
	}
	return false
}

func cgroupCounter(file, key string) int {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", path, err)
	}
	return pid, nil
}

// runcError returns the last error runc logged, or err.
func runcError(logPath string, err error) string {
	if msg := runclog.LastError(logPath); msg != "" {
		return msg
	}
	return err.Error()
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// pipeIO hands runc the container's stdio.
type pipeIO struct{ stdin, stdout, stderr *os.File }

func (p *pipeIO) Close() error          { return nil }
func (p *pipeIO) Stdin() io.WriteCloser { return nil }
func (p *pipeIO) Stdout() io.ReadCloser { return nil }
func (p *pipeIO) Stderr() io.ReadCloser { return nil }
func (p *pipeIO) Set(cmd *execCmd)      { cmd.Stdin, cmd.Stdout, cmd.Stderr = p.stdin, p.stdout, p.stderr }

// runningError refuses to forget a container that runs.
type runningError struct{ id string }

func (e runningError) Error() string { return fmt.Sprintf("container %s is running", e.id) }

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) Close() error                { return nil }
