package main

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
)

// reaper is the monitor's only caller of wait4. The monitor is a child
// subreaper, so container processes become its children once runc exits;
// every exit — of a runc command or of a container — is collected here and
// handed to whoever claimed the PID. It implements go-runc's ProcessMonitor,
// so go-runc's own commands are reaped here too instead of racing us in
// cmd.Wait.
type reaper struct {
	mu        sync.Mutex
	waiters   map[int]chan runc.Exit // claimed PIDs; guarded by mu
	unclaimed map[int]runc.Exit      // exits nobody has claimed yet; guarded by mu
}

func newReaper() *reaper {
	return &reaper{waiters: map[int]chan runc.Exit{}, unclaimed: map[int]runc.Exit{}}
}

// run reaps on every SIGCHLD until the process exits.
func (r *reaper) run() {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, syscall.SIGCHLD)
	for range sigs {
		r.reapAll()
	}
}

// reapAll reaps under mu (wait4 with WNOHANG never blocks), so that
// signal, holding mu, knows a claimed PID is not yet reaped and so still
// names the process it was claimed for.
func (r *reaper) reapAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		e := runc.Exit{Timestamp: time.Now(), Pid: pid, Status: exitStatus(ws)}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- e
		} else {
			r.unclaimed[pid] = e
		}
	}
}

// signal sends sig to pid if it is claimed and not yet reaped: a PID whose
// exit was collected may already belong to another process. It reports
// whether the process was still there to signal.
func (r *reaper) signal(pid int, sig syscall.Signal) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, claimed := r.waiters[pid]; !claimed || pid <= 0 {
		return false, nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return true, err
	}
	return true, nil
}

// exitStatus is the shell's convention: the exit code, or 128 + signal.
func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// claim returns a channel that receives pid's exit, including one that
// happened before the claim.
func (r *reaper) claim(pid int) chan runc.Exit {
	ch := make(chan runc.Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		ch <- e
		return ch
	}
	r.waiters[pid] = ch
	return ch
}

// Start implements runc.ProcessMonitor. Holding mu across Start and the
// claim means the exit cannot be reaped in between.
func (r *reaper) Start(c *exec.Cmd) (chan runc.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := c.Start(); err != nil {
		return nil, err
	}
	ch := make(chan runc.Exit, 1)
	r.waiters[c.Process.Pid] = ch
	return ch, nil
}

// StartLocked implements runc.ProcessMonitor (used with PdeathSignal, which
// the monitor does not set).
func (r *reaper) StartLocked(c *exec.Cmd) (chan runc.Exit, error) { return r.Start(c) }

// Wait implements runc.ProcessMonitor. cmd.Wait returns an error because the
// process is already reaped, but it still waits for the command's output
// copying to finish, which the callers need.
func (r *reaper) Wait(c *exec.Cmd, ec chan runc.Exit) (int, error) {
	e := <-ec
	_ = c.Wait()
	return e.Status, nil
}
