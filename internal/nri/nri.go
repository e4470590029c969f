// Package nri embeds the Node Resource Interface: containerd/nri's
// adaptation package, which serves NRI plugins on a unix socket (and starts
// pre-installed ones), relays each pod and container lifecycle point to
// them, and takes their adjustments and updates back.
//
// This package adds what the adaptation leaves to its runtime: one event
// per object and kind (a container is stopped for plugins exactly once,
// before it is removed), the runtime's side of plugin synchronization, and
// a no-op form for when NRI is disabled. What a pod or a container is for
// NRI, and how an adjustment reaches a spec, is the caller's (internal/cri)
// and specgen.go's.
package nri

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
)

// Config is the [nri] table.
type Config struct {
	Enable              bool
	SocketPath          string
	PluginPath          string
	PluginConfigPath    string
	RegistrationTimeout time.Duration
	RequestTimeout      time.Duration
}

// Host is what NRI asks of the runtime it is embedded in.
type Host interface {
	// List returns every pod and container as NRI sees them, for a plugin
	// that synchronizes.
	List(ctx context.Context) ([]*api.PodSandbox, []*api.Container)
	// Update applies plugins' updates of containers' resources and returns
	// those that failed.
	Update(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error)
	// Evict stops the containers plugins ask to evict.
	Evict(ctx context.Context, evictions []*api.ContainerEviction) error
}

// phase is how far an object has got, as plugins were told.
type phase int

const (
	created phase = iota + 1
	running
	stopped
)

// NRI relays lifecycle events to plugins. A nil *NRI, or one built with
// Enable false, does nothing and blocks nothing.
type NRI struct {
	a      *adaptation.Adaptation
	host   Host
	logger *slog.Logger
	stats  *Stats

	// mu orders the events (the adaptation relays one at a time anyway)
	// and guards phases: what plugins were told about each object, so that
	// each is told each thing once.
	mu     sync.Mutex
	phases map[string]phase
}

// New builds an NRI from cfg; Start serves it. name and version are the
// runtime's, as plugins see them.
func New(cfg Config, name, version string, host Host, logger *slog.Logger) (*NRI, error) {
	if !cfg.Enable {
		return nil, nil
	}
	// The adaptation keeps its logger and timeouts in package state (one
	// NRI per process): its logger is installed once and writes to the
	// latest NRI's.
	adaptationLogger.Store(logger.With("component", "nri"))
	installLogger.Do(func() { nrilog.Set(slogAdapter{}) })
	if cfg.RegistrationTimeout > 0 {
		adaptation.SetPluginRegistrationTimeout(cfg.RegistrationTimeout)
	}
	if cfg.RequestTimeout > 0 {
		adaptation.SetPluginRequestTimeout(cfg.RequestTimeout)
	}
	n := &NRI{host: host, logger: logger, stats: newStats(), phases: map[string]phase{}}
	a, err := adaptation.New(name, version, n.sync, n.unsolicitedUpdate,
		adaptation.WithSocketPath(cfg.SocketPath),
		adaptation.WithPluginPath(cfg.PluginPath),
		adaptation.WithPluginConfigPath(cfg.PluginConfigPath),
		adaptation.WithMetrics(n.stats),
	)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	n.a = a
	return n, nil
}

// Enabled reports whether plugins are served.
func (n *NRI) Enabled() bool { return n != nil && n.a != nil }

// Start starts pre-installed plugins (synchronizing them) and listens for
// plugins on the socket.
func (n *NRI) Start() error {
	if !n.Enabled() {
		return nil
	}
	if err := n.a.Start(); err != nil {
		return fmt.Errorf("nri: %w", err)
	}
	return nil
}

// Stop closes the socket and every plugin connection.
func (n *NRI) Stop() {
	if n.Enabled() {
		n.a.Stop()
	}
}

// BlockSync keeps plugins from synchronizing until the returned function
// is called. A call that changes which pods and containers exist, or their
// state, holds it from before it tells plugins until its record is
// written: a plugin that connects meanwhile then either synchronizes with
// the record as written or is registered in time to be told.
//
// Lock order: BlockSync before any pod or container lock, since a
// synchronization applies plugins' updates under those locks.
func (n *NRI) BlockSync() func() {
	if !n.Enabled() {
		return func() {}
	}
	b := n.a.BlockPluginSync()
	return b.Unblock
}

// sync is the adaptation's SyncFn: it runs with synchronization requested,
// so no call that changes state is between telling plugins and recording.
// An object already known keeps its phase: a stop recorded but not yet
// told is still told to every plugin, the new one included.
func (n *NRI) sync(ctx context.Context, cb adaptation.SyncCB) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	pods, containers := n.host.List(ctx)
	for _, c := range containers {
		if _, ok := n.phases[c.GetId()]; !ok {
			n.phases[c.GetId()] = phaseOf(c)
		}
	}
	updates, err := cb(ctx, pods, containers)
	if err != nil {
		return err
	}
	n.applyUpdates(ctx, "synchronize", updates)
	return nil
}

// unsolicitedUpdate is a plugin's own request to update containers.
func (n *NRI) unsolicitedUpdate(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return n.host.Update(ctx, updates)
}

// applyUpdates applies the updates of other containers that a plugin
// asked for while answering an event. Like containerd, a failure fails
// only those updates, not the event.
func (n *NRI) applyUpdates(ctx context.Context, event string, updates []*api.ContainerUpdate) {
	if len(updates) == 0 {
		return
	}
	failed, err := n.host.Update(ctx, updates)
	if err != nil || len(failed) > 0 {
		n.logger.WarnContext(ctx, "nri: container updates a plugin asked for failed", "event", event, "failed", len(failed), "error", err)
	}
}

func (n *NRI) evict(ctx context.Context, event string, evictions []*api.ContainerEviction) {
	if len(evictions) == 0 {
		return
	}
	if err := n.host.Evict(ctx, evictions); err != nil {
		n.logger.WarnContext(ctx, "nri: evictions a plugin asked for failed", "event", event, "error", err)
	}
}

// locked runs fn holding mu, if NRI is enabled: the frame of every event.
func (n *NRI) locked(fn func() error) error {
	if !n.Enabled() {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return fn()
}

// RunPodSandbox tells plugins a pod is being made; an error vetoes it.
func (n *NRI) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	return n.locked(func() error {
		n.phases[pod.GetId()] = running
		return n.a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod})
	})
}

// UpdatePodSandbox tells plugins a pod's resources are about to change;
// an error vetoes the change.
func (n *NRI) UpdatePodSandbox(ctx context.Context, pod *api.PodSandbox, overhead, resources *api.LinuxResources) error {
	return n.locked(func() error {
		_, err := n.a.UpdatePodSandbox(ctx, &api.UpdatePodSandboxRequest{Pod: pod, OverheadLinuxResources: overhead, LinuxResources: resources})
		return err
	})
}

// PostUpdatePodSandbox tells plugins a pod's resources changed.
func (n *NRI) PostUpdatePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	return n.locked(func() error {
		return n.a.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: pod})
	})
}

// StopPodSandbox tells plugins a pod stopped, once: a repeated stop, or
// one of a pod plugins never heard of, tells nothing.
func (n *NRI) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	return n.locked(func() error {
		return n.stopPod(ctx, pod)
	})
}

func (n *NRI) stopPod(ctx context.Context, pod *api.PodSandbox) error {
	if p, ok := n.phases[pod.GetId()]; !ok || p == stopped {
		return nil
	}
	n.phases[pod.GetId()] = stopped
	return n.a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod})
}

// RemovePodSandbox tells plugins a pod is gone (stopping it first for
// them if it was not).
func (n *NRI) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	return n.locked(func() error {
		if _, ok := n.phases[pod.GetId()]; !ok {
			return nil
		}
		stopErr := n.stopPod(ctx, pod)
		delete(n.phases, pod.GetId())
		if err := n.a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod}); err != nil {
			return err
		}
		return stopErr
	})
}

// CreateContainer asks plugins for their adjustments to a container being
// made; an error vetoes it. Updates of other containers and evictions they
// ask for are applied before it returns.
func (n *NRI) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, error) {
	if !n.Enabled() {
		return nil, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.phases[ctr.GetId()] = created
	resp, err := n.a.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return nil, err
	}
	n.evict(ctx, "CreateContainer", resp.GetEvict())
	n.applyUpdates(ctx, "CreateContainer", resp.GetUpdate())
	return resp.GetAdjust(), nil
}

// UndoCreateContainer tells plugins that a container they adjusted was
// not made after all: it stopped and was removed.
func (n *NRI) UndoCreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) {
	if !n.Enabled() {
		return
	}
	if err := n.RemoveContainer(ctx, pod, ctr); err != nil {
		n.logger.WarnContext(ctx, "nri: undo of a container create", "id", ctr.GetId(), "error", err)
	}
}

// PostCreateContainer tells plugins a container was made.
func (n *NRI) PostCreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	return n.locked(func() error {
		return n.a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: pod, Container: ctr})
	})
}

// StartContainer tells plugins a container is about to start; an error
// vetoes the start.
func (n *NRI) StartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	return n.locked(func() error {
		n.phases[ctr.GetId()] = running
		return n.a.StartContainer(ctx, &api.StartContainerRequest{Pod: pod, Container: ctr})
	})
}

// PostStartContainer tells plugins a container started.
func (n *NRI) PostStartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	return n.locked(func() error {
		return n.a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: ctr})
	})
}

// UpdateContainer asks plugins about a change of a container's resources
// (res) and returns the resources to apply: res as plugins adjusted it. An
// error vetoes the change.
func (n *NRI) UpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, res *api.LinuxResources) (*api.LinuxResources, error) {
	if !n.Enabled() {
		return res, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	resp, err := n.a.UpdateContainer(ctx, &api.UpdateContainerRequest{Pod: pod, Container: ctr, LinuxResources: res})
	if err != nil {
		return nil, err
	}
	n.evict(ctx, "UpdateContainer", resp.GetEvict())
	// The adaptation puts the requested container's own update last.
	updates := resp.GetUpdate()
	if len(updates) > 0 && updates[len(updates)-1].GetContainerId() == ctr.GetId() {
		res = updates[len(updates)-1].GetLinux().GetResources()
		updates = updates[:len(updates)-1]
	}
	n.applyUpdates(ctx, "UpdateContainer", updates)
	return res, nil
}

// PostUpdateContainer tells plugins a container's resources changed.
func (n *NRI) PostUpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	return n.locked(func() error {
		return n.a.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: pod, Container: ctr})
	})
}

// StopContainer tells plugins a container stopped — by StopContainer or on
// its own — once per container, and only one created or started.
func (n *NRI) StopContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	return n.locked(func() error {
		return n.stopContainer(ctx, pod, ctr)
	})
}

func (n *NRI) stopContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if p, ok := n.phases[ctr.GetId()]; !ok || p == stopped {
		return nil
	}
	n.phases[ctr.GetId()] = stopped
	resp, err := n.a.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return err
	}
	n.applyUpdates(ctx, "StopContainer", resp.GetUpdate())
	return nil
}

// RemoveContainer tells plugins a container is gone, stopping it for them
// first if they were not told it stopped.
func (n *NRI) RemoveContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	return n.locked(func() error {
		if _, ok := n.phases[ctr.GetId()]; !ok {
			return nil
		}
		stopErr := n.stopContainer(ctx, pod, ctr)
		delete(n.phases, ctr.GetId())
		if err := n.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: ctr}); err != nil {
			return err
		}
		return stopErr
	})
}

// Known records, after a restart, the pods and containers that exist
// (notReady: the pods not ready, which were stopped or lost their pause
// container), so that their stops and removals reach plugins — which
// resynchronize when they reconnect — like any other, and only once.
func (n *NRI) Known(pods []*api.PodSandbox, notReady map[string]bool, containers []*api.Container) {
	if !n.Enabled() {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range pods {
		if _, ok := n.phases[p.GetId()]; ok {
			continue
		}
		n.phases[p.GetId()] = running
		if notReady[p.GetId()] {
			n.phases[p.GetId()] = stopped
		}
	}
	for _, c := range containers {
		if _, ok := n.phases[c.GetId()]; !ok {
			n.phases[c.GetId()] = phaseOf(c)
		}
	}
}

// phaseOf is what a container's state tells plugins about it.
func phaseOf(c *api.Container) phase {
	switch c.GetState() {
	case api.ContainerState_CONTAINER_CREATED:
		return created
	case api.ContainerState_CONTAINER_RUNNING, api.ContainerState_CONTAINER_PAUSED:
		return running
	default:
		return stopped
	}
}

var (
	adaptationLogger atomic.Pointer[slog.Logger]
	installLogger    sync.Once
)

// slogAdapter is the adaptation's logger over slog (adaptationLogger). Its
// Info lines (each plugin connecting, the invocation order) are Debug
// here: a node sees them on every plugin restart.
type slogAdapter struct{}

func (slogAdapter) l() *slog.Logger { return adaptationLogger.Load() }

func (s slogAdapter) Debugf(ctx context.Context, format string, args ...any) {
	s.l().DebugContext(ctx, fmt.Sprintf(format, args...))
}
func (s slogAdapter) Infof(ctx context.Context, format string, args ...any) {
	s.l().DebugContext(ctx, fmt.Sprintf(format, args...))
}
func (s slogAdapter) Warnf(ctx context.Context, format string, args ...any) {
	s.l().WarnContext(ctx, fmt.Sprintf(format, args...))
}
func (s slogAdapter) Errorf(ctx context.Context, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, adaptation.ErrWasmDisabled.Error()) {
		// berth is built without WASM plugins on purpose (nri_no_wasm);
		// the adaptation says so as an error at every start.
		s.l().DebugContext(ctx, msg)
		return
	}
	s.l().ErrorContext(ctx, msg)
}
