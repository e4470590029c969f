package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"

	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/ociruntime"
	"github.com/berth-cri/berth/internal/store"
)

// Reasons berth gives exited containers beyond Completed / Error / OOMKilled.
const (
	reasonOOMKilled    = "OOMKilled"
	reasonCompleted    = "Completed"
	reasonError        = "Error"
	reasonStartError   = "StartError"
	reasonMonitorDied  = "MonitorDied"
	reasonExitUnknown  = "ExitUnknown"
	monitorRetryPeriod = 200 * time.Millisecond
)

// layout is where things live under --state.
func (s *Service) layout() layout.State { return layout.State(s.cfg.State) }

// handlerOf is the RuntimeClass handler a pod runs on.
func (s *Service) handlerOf(sb store.Sandbox) ociruntime.Handler {
	return s.handlerSet().Recorded(sb.RuntimeHandler)
}

// exitWaiters lets StopContainer and RemoveContainer wait for the exit the
// monitor reports.
type exitWaiters struct {
	mu      sync.Mutex
	waiters map[string][]chan struct{} // guarded by mu
}

// wait returns a channel closed when id's exit has been recorded, and the
// function that gives up waiting (the waiter stays registered until then).
func (w *exitWaiters) wait(id string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	w.waiters[id] = append(w.waiters[id], ch)
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		i := slices.Index(w.waiters[id], ch)
		if i < 0 {
			return // notified
		}
		w.waiters[id] = slices.Delete(w.waiters[id], i, i+1)
		if len(w.waiters[id]) == 0 {
			delete(w.waiters, id)
		}
	}
}

func (w *exitWaiters) notify(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.waiters[id] {
		close(ch)
	}
	delete(w.waiters, id)
}

// Run watches every pod's monitor for container exits until ctx ends:
// pods that exist now, and pods RunPodSandbox adds later. It returns when
// ctx is done and every watcher has stopped.
func (s *Service) Run(ctx context.Context) {
	defer s.bg.Wait() // after the watchers, which start background work
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-s.watchPods:
			wg.Go(func() { s.watchPod(ctx, id) })
		}
	}
}

// watch asks Run to watch a pod's monitor.
func (s *Service) watch(ctx context.Context, podID string) {
	select {
	case s.watchPods <- podID:
	case <-ctx.Done():
	}
}

// watchPod applies the exit events of one pod's monitor. On each
// (re)subscription it reconciles with the monitor's state, so no exit is
// missed. When the monitor is gone for good, its containers are stopped and
// recorded as exited.
func (s *Service) watchPod(ctx context.Context, podID string) {
	for {
		sb, err := s.store.Sandboxes.Get(podID)
		if err != nil {
			return // removed
		}
		client := s.monitors.Client(sb.MonitorSocket)
		err = client.Events(ctx, func() { s.reconcile(ctx, sb, client) }, func(ev api.Event) {
			if ev.ID == sb.ID {
				s.pauseExited(sb)
				return
			}
			s.recordExit(ev.ID, ev.Exit, "", "")
		})
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, monitor.ErrUnreachable) || monitorAlive(sb) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(monitorRetryPeriod):
				continue
			}
		}
		if _, err := s.store.Sandboxes.Get(podID); err != nil || s.retiring.has(podID) {
			return // removed or being removed: its monitor was shut down on purpose
		}
		s.monitorDied(ctx, sb)
		return
	}
}

// reconcile records the exits of containers the store still has running:
// from the monitor's state, or from the exit record in the bundle.
func (s *Service) reconcile(ctx context.Context, sb store.Sandbox, client monitorClient) {
	states, err := client.State(ctx)
	if err != nil {
		return // the event loop notices an unreachable monitor
	}
	known := map[string]api.Container{}
	for _, c := range states {
		known[c.ID] = c
	}
	if pause, ok := known[sb.ID]; sb.PauseContainer && (!ok || !pause.Running) {
		s.pauseExited(sb)
	}
	for _, c := range s.podContainers(sb.ID) {
		if st, ok := known[c.ID]; ok && c.State() == store.ContainerCreated {
			// The daemon died between the monitor's start and the record:
			// the container did start, or is starting (no PID yet).
			if st.Pid > 0 {
				s.adoptStarted(c.ID, st)
			} else {
				s.background(ctx, func(ctx context.Context) { s.awaitStart(ctx, client, c.ID) })
			}
			continue
		}
		if c.State() != store.ContainerRunning {
			continue
		}
		if st, ok := known[c.ID]; ok {
			if st.Exit != nil {
				s.recordExit(c.ID, *st.Exit, "", "")
			}
			continue
		}
		if exit, ok, _ := monitor.ReadExit(c.Bundle); ok {
			s.recordExit(c.ID, exit, "", "")
			continue
		}
		s.recordExit(c.ID, api.Exit{Code: 255, FinishedAt: time.Now().UTC()}, reasonExitUnknown,
			"the monitor has no record of this container and it left no exit record")
	}
}

// awaitStart waits, without holding anything up, for a start the monitor
// is still making of a container recorded as created, and records it.
func (s *Service) awaitStart(ctx context.Context, client monitorClient, id string) {
	for ctx.Err() == nil {
		states, err := client.SettledState(ctx)
		if err != nil {
			return // the event loop handles a monitor that went away
		}
		i := slices.IndexFunc(states, func(st api.Container) bool { return st.ID == id })
		switch {
		case i < 0:
			return // the start failed: the monitor forgot it
		case states[i].Pid > 0:
			s.adoptStarted(id, states[i])
			return
		}
	}
}

// adoptStarted records as started a container the monitor runs (or ran)
// though its record still says created, and its exit if it has one. The
// start time is when this is noticed: the true one was never recorded.
func (s *Service) adoptStarted(id string, st api.Container) {
	now := time.Now().UTC()
	if _, err := s.store.Containers.Update(id, func(c store.Container) (store.Container, error) {
		if c.StartedAt.IsZero() {
			c.StartedAt, c.Pid = now, st.Pid
		}
		return c, nil
	}); errdefs.IsNotFound(err) {
		return // removed meanwhile
	} else if err != nil {
		s.logger.Error("record a start the daemon missed", "id", id, "error", err)
		return
	}
	s.logger.Warn("recorded a container start a crash kept from its record", "id", id, "pid", st.Pid)
	if st.Exit != nil {
		s.recordExit(id, *st.Exit, "", "")
	}
}

// pauseExited marks a pod whose pause container is gone not ready, as
// containerd and CRI-O do: in the classic mode the pod is its pause
// container, and kubelet then recreates the pod.
func (s *Service) pauseExited(sb store.Sandbox) {
	s.exits.notify(sb.ID)
	if _, err := s.store.Sandboxes.Update(sb.ID, func(sb store.Sandbox) (store.Sandbox, error) {
		sb.Ready = false
		return sb, nil
	}); err != nil && !errdefs.IsNotFound(err) {
		s.logger.Error("record pause container exit", "pod", sb.ID, "error", err)
	}
}

// recordExit stores a container's exit, tells NRI plugins it stopped, and
// wakes whoever waits for it.
func (s *Service) recordExit(id string, exit api.Exit, reason, message string) {
	if err := s.finishContainer(id, exit, reason, message); err != nil && !errdefs.IsNotFound(err) {
		s.logger.Error("record container exit", "id", id, "error", err)
	}
	s.exits.notify(id)
}

// finishContainer records a container's end (once: a later call changes
// nothing) and, when this call recorded it, tells NRI plugins.
func (s *Service) finishContainer(id string, exit api.Exit, reason, message string) error {
	oomKilled, recorded := false, false
	_, err := s.store.Containers.Update(id, func(c store.Container) (store.Container, error) {
		oomKilled, recorded = false, false // the update function may run again
		if !c.FinishedAt.IsZero() {
			return c, nil
		}
		recorded = true
		c.FinishedAt = exit.FinishedAt
		if c.StartedAt.IsZero() || c.StartedAt.After(c.FinishedAt) {
			c.StartedAt = c.FinishedAt
		}
		c.ExitCode = exit.Code
		switch {
		case reason != "":
			c.Reason = reason
		case exit.OOMKilled:
			c.Reason = reasonOOMKilled
		}
		oomKilled = c.Reason == reasonOOMKilled
		c.Message = message
		return c, nil
	})
	if err != nil {
		return err
	}
	if oomKilled {
		s.metrics.OOMKill()
	}
	if recorded {
		s.nriStopped(context.Background(), id)
	}
	return nil
}

// monitorDied stops what a dead monitor left: its containers would run
// unmonitored, with nobody holding their output or recording their exit.
//
// It warns only when the monitor's death cost something (a container it
// had to kill): a monitor gone with nothing left running — after a crash in
// the middle of RemovePodSandbox, say — is noted at Info.
func (s *Service) monitorDied(ctx context.Context, sb store.Sandbox) {
	r := s.handlerOf(sb).Runc()
	killed := 0
	for _, c := range s.podContainers(sb.ID) {
		if c.State() == store.ContainerCreated {
			// Its start may have run unrecorded: the runtime kills it if so.
			_ = r.Delete(ctx, c.ID, &runc.DeleteOpts{Force: true})
			continue
		}
		if c.State() != store.ContainerRunning {
			continue
		}
		exit, ok, _ := monitor.ReadExit(c.Bundle)
		if ok {
			s.recordExit(c.ID, exit, "", "")
			continue
		}
		killed++
		_ = r.Kill(ctx, c.ID, int(syscall.SIGKILL), &runc.KillOpts{All: true})
		_ = r.Delete(ctx, c.ID, &runc.DeleteOpts{Force: true})
		s.recordExit(c.ID, api.Exit{Code: 137, Signal: int(syscall.SIGKILL), FinishedAt: time.Now().UTC()}, reasonMonitorDied,
			"the pod's monitor exited, so berth killed the container rather than leave it unmonitored")
	}
	if sb.PauseContainer {
		// runc delete --force kills it; RemovePodSandbox removes the rest.
		_ = r.Delete(ctx, sb.ID, &runc.DeleteOpts{Force: true})
	}
	if killed > 0 {
		s.logger.Warn("pod monitor is gone; killed the containers it ran", "pod", sb.ID, "monitor_pid", sb.MonitorPid, "killed", killed)
		return
	}
	s.logger.Info("pod monitor is gone; none of its containers was running", "pod", sb.ID, "monitor_pid", sb.MonitorPid)
}

// retiringMonitors are the pods whose monitor berth is shutting down itself
// (RemovePodSandbox): its end is no monitor death.
type retiringMonitors struct {
	mu   sync.Mutex
	pods map[string]bool
}

func (r *retiringMonitors) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pods == nil {
		r.pods = map[string]bool{}
	}
	r.pods[id] = true
}

func (r *retiringMonitors) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pods, id)
}

func (r *retiringMonitors) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pods[id]
}

// monitorAlive reports whether the sandbox's monitor process still runs:
// the PID exists and is a berth-monitor serving this pod's socket (PIDs are
// reused).
func monitorAlive(sb store.Sandbox) bool {
	if sb.MonitorPid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", sb.MonitorPid))
	if err != nil {
		return false
	}
	return strings.Contains(string(cmdline), sb.MonitorSocket)
}

// podContainers lists the containers of a pod.
func (s *Service) podContainers(podID string) []store.Container {
	var out []store.Container
	for _, c := range s.store.Containers.List() {
		if c.SandboxID == podID {
			out = append(out, c)
		}
	}
	return out
}
