package main

import (
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

func (r *reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		e := runc.Exit{Timestamp: time.Now(), Pid: pid, Status: exitStatus(ws)}
		r.mu.Lock()
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- e
		} else {
			r.unclaimed[pid] = e
		}
		r.mu.Unlock()
	}
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
