package cri

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/containerd/errdefs"
	nriapi "github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/nri"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/store"
)

// What NRI plugins see of berth, and what they may ask of it
// (docs/architecture.md, "NRI"). Each RPC tells plugins at its point in
// the lifecycle; this file turns records into NRI's objects and serves
// plugins' updates and evictions.

// nriUpdateLockWait bounds how long a plugin's update of a container waits
// for the container's lock: a call holding it may itself be waiting for
// the synchronization that carries the update.
const nriUpdateLockWait = 2 * time.Second

// SetNRI has the service tell n's plugins about pods and containers. Call
// it before serving; n may be nil (NRI disabled).
func (s *Service) SetNRI(n *nri.NRI) { s.nri = n }

// NRIHost is what NRI asks of this service.
func (s *Service) NRIHost() nri.Host { return nriHost{s} }

// nriRefused is the error of a call a plugin vetoed.
func nriRefused(what string, err error) error {
	return fmt.Errorf("NRI plugin refused %s: %v: %w", what, err, errdefs.ErrFailedPrecondition)
}

// nriPod is a pod as NRI plugins see it.
func nriPod(sb store.Sandbox) *nriapi.PodSandbox {
	var cfg runtime.PodSandboxConfig
	_ = proto.Unmarshal(sb.Config, &cfg) // written by RunPodSandbox
	p := &nriapi.PodSandbox{
		Id: sb.ID, Name: sb.Metadata.Name, Uid: sb.Metadata.UID, Namespace: sb.Metadata.Namespace,
		Labels: sb.Labels, Annotations: sb.Annotations, RuntimeHandler: sb.RuntimeHandler,
		Pid: uint32(max(sb.PausePid, 0)), Ips: sb.IPs,
		Linux: &nriapi.LinuxPodSandbox{
			CgroupParent: sb.CgroupParent,
			PodOverhead:  nriResources(cfg.GetLinux().GetOverhead()),
			PodResources: nriResources(cfg.GetLinux().GetResources()),
		},
	}
	for typ, path := range map[string]string{"network": sb.Paths.NetNS, "ipc": sb.Paths.IPCNS, "uts": sb.Paths.UTSNS, "user": sb.Paths.UserNS} {
		if path != "" {
			p.Linux.Namespaces = append(p.Linux.Namespaces, &nriapi.LinuxNamespace{Type: typ, Path: path})
		}
	}
	if sb.PausePid > 0 {
		p.Linux.Namespaces = append(p.Linux.Namespaces, &nriapi.LinuxNamespace{Type: "pid", Path: fmt.Sprintf("/proc/%d/ns/pid", sb.PausePid)})
	}
	return p
}

// nriResources is CRI's resources in NRI's terms (nil for none).
func nriResources(r *runtime.LinuxContainerResources) *nriapi.LinuxResources {
	if r == nil {
		return nil
	}
	return nriapi.FromOCILinuxResources(spec.Resources(r), nil)
}

// nriContainer is a container as NRI plugins see it: its record, and its
// spec (read from its bundle when sp is nil).
func nriContainer(c store.Container, sp *specs.Spec) *nriapi.Container {
	if sp == nil {
		sp, _, _ = bundleSpec(c.Bundle) // a container without one is shown bare
	}
	ctr := &nriapi.Container{
		Id: c.ID, PodSandboxId: c.SandboxID, Name: c.Metadata.Name,
		State: nriState(c), Labels: c.Labels, Annotations: c.Annotations,
		Pid: uint32(max(c.Pid, 0)), CreatedAt: unixNanoOrZero(c.CreatedAt),
		StartedAt: unixNanoOrZero(c.StartedAt), FinishedAt: unixNanoOrZero(c.FinishedAt),
		ExitCode: c.ExitCode, StatusReason: c.Reason, StatusMessage: c.Message,
		Linux: &nriapi.LinuxContainer{CgroupsPath: c.CgroupsPath},
	}
	if sp == nil {
		return ctr
	}
	if len(sp.Annotations) > 0 {
		ctr.Annotations = sp.Annotations
	}
	ctr.Mounts = nriapi.FromOCIMounts(sp.Mounts)
	ctr.Hooks = nriapi.FromOCIHooks(sp.Hooks)
	if p := sp.Process; p != nil {
		ctr.Args, ctr.Env = p.Args, p.Env
		for _, r := range p.Rlimits {
			ctr.Rlimits = append(ctr.Rlimits, &nriapi.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
		if p.OOMScoreAdj != nil {
			ctr.Linux.OomScoreAdj = nriapi.Int(*p.OOMScoreAdj)
		}
	}
	if l := sp.Linux; l != nil {
		ctr.Linux.Namespaces = nriapi.FromOCILinuxNamespaces(l.Namespaces)
		ctr.Linux.Devices = nriapi.FromOCILinuxDevices(l.Devices)
		ctr.Linux.Resources = nriapi.FromOCILinuxResources(l.Resources, nil)
		ctr.Linux.Sysctl = l.Sysctl
		if l.Seccomp != nil {
			ctr.Linux.SeccompPolicy = nriapi.FromOCILinuxSeccomp(l.Seccomp)
		}
		if l.CgroupsPath != "" {
			ctr.Linux.CgroupsPath = l.CgroupsPath
		}
	}
	return ctr
}

func nriState(c store.Container) nriapi.ContainerState {
	switch c.State() {
	case store.ContainerRunning:
		return nriapi.ContainerState_CONTAINER_RUNNING
	case store.ContainerExited:
		return nriapi.ContainerState_CONTAINER_STOPPED
	default:
		return nriapi.ContainerState_CONTAINER_CREATED
	}
}

// nriStopped tells plugins a container stopped, after its exit is
// recorded (recordExit): once, whoever recorded it.
func (s *Service) nriStopped(ctx context.Context, id string) {
	if !s.nri.Enabled() {
		return
	}
	c, err := s.store.Containers.Get(id)
	if err != nil {
		return // removed meanwhile: the removal told plugins
	}
	sb, err := s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return
	}
	if err := s.nri.StopContainer(ctx, nriPod(sb), nriContainer(c, nil)); err != nil {
		s.logger.WarnContext(ctx, "nri: StopContainer", "id", id, "error", err)
	}
}

// nriRemoved tells plugins a container is gone (and stopped, if they were
// not told); ctr is the container as it was before its files went.
func (s *Service) nriRemoved(ctx context.Context, ctr *nriapi.Container, sb store.Sandbox) {
	if err := s.nri.RemoveContainer(ctx, nriPod(sb), ctr); err != nil {
		s.logger.WarnContext(ctx, "nri: RemoveContainer", "id", ctr.GetId(), "error", err)
	}
}

// nriAdjust asks plugins to adjust a container being created and applies
// what they answer to its spec. The spec's annotations become the record's
// (plugins may add some); a veto is FailedPrecondition.
func (s *Service) nriAdjust(ctx context.Context, sb store.Sandbox, c *store.Container, sp *specs.Spec) error {
	adj, err := s.nri.CreateContainer(ctx, nriPod(sb), nriContainer(*c, sp))
	if err != nil {
		return nriRefused("the container", err)
	}
	if adj == nil {
		return nil
	}
	if err := nri.Adjust(sp, adj, nri.AdjustOptions{InjectCDI: s.injectCDINames, CheckResources: checkSpecResources}); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	// The record says what plugins changed, as ContainerStatus reports it.
	if len(adj.GetAnnotations()) > 0 {
		c.Annotations = maps.Clone(c.Annotations)
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		for k, v := range adj.GetAnnotations() {
			if key, remove := nriapi.IsMarkedForRemoval(k); remove {
				delete(c.Annotations, key)
				continue
			}
			c.Annotations[k] = v
		}
	}
	c.CgroupsPath = sp.Linux.CgroupsPath
	if adj.GetLinux().GetResources() != nil {
		var cfg runtime.ContainerConfig
		if err := proto.Unmarshal(c.Config, &cfg); err != nil {
			return fmt.Errorf("container %s config: %w", c.ID, err)
		}
		if cfg.Linux == nil {
			cfg.Linux = &runtime.LinuxContainerConfig{}
		}
		cfg.Linux.Resources = criResources(sp.Linux.Resources, cfg.Linux.Resources)
		raw, err := proto.Marshal(&cfg)
		if err != nil {
			return fmt.Errorf("encode config: %w", err)
		}
		c.Config = raw
	}
	return nil
}

// checkSpecResources refuses cgroup v2 keys on a v1 host.
func checkSpecResources(r *specs.LinuxResources) error {
	if r == nil || len(r.Unified) == 0 {
		return nil
	}
	return checkResources(&runtime.LinuxContainerResources{Unified: r.Unified}, "NRI adjustment: linux.resources")
}

// nriHost serves NRI's requests.
type nriHost struct{ s *Service }

// List is every pod and container, for a synchronizing plugin.
func (h nriHost) List(context.Context) ([]*nriapi.PodSandbox, []*nriapi.Container) {
	var pods []*nriapi.PodSandbox
	for _, sb := range h.s.store.Sandboxes.List() {
		pods = append(pods, nriPod(sb))
	}
	var ctrs []*nriapi.Container
	for _, c := range h.s.store.Containers.List() {
		ctrs = append(ctrs, nriContainer(c, nil))
	}
	return pods, ctrs
}

// Update applies plugins' resource updates of containers, each like an
// UpdateContainerResources (without asking plugins again). It returns
// those that failed; a failure not marked IgnoreFailure is also an error.
func (h nriHost) Update(ctx context.Context, updates []*nriapi.ContainerUpdate) ([]*nriapi.ContainerUpdate, error) {
	var failed []*nriapi.ContainerUpdate
	var errs []error
	for _, u := range updates {
		res := u.GetLinux().GetResources()
		if res == nil {
			continue
		}
		if err := h.update(ctx, u.GetContainerId(), res); err != nil {
			failed = append(failed, u)
			if !u.GetIgnoreFailure() {
				errs = append(errs, fmt.Errorf("container %s: %w", u.GetContainerId(), err))
			}
		}
	}
	return failed, errors.Join(errs...)
}

func (h nriHost) update(ctx context.Context, id string, res *nriapi.LinuxResources) error {
	lockCtx, cancel := context.WithTimeout(ctx, nriUpdateLockWait)
	defer cancel()
	c, work, release, err := h.s.holdContainer(lockCtx, id, opTimeout)
	if err != nil {
		return err
	}
	defer release()
	if c.State() == store.ContainerExited {
		return fmt.Errorf("container %s has exited: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	_ = work
	return h.s.applyResources(context.WithoutCancel(ctx), c, res.ToOCI(), nil)
}

// Evict stops the containers plugins evict, in the background: a plugin
// asks while it answers an event, which must not wait for a stop that
// tells it (and every plugin) again.
func (h nriHost) Evict(ctx context.Context, evictions []*nriapi.ContainerEviction) error {
	for _, e := range evictions {
		id, reason := e.GetContainerId(), e.GetReason()
		h.s.background(context.WithoutCancel(ctx), func(ctx context.Context) {
			h.s.logger.InfoContext(ctx, "nri: evicting container", "id", id, "reason", reason)
			if _, err := h.s.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id}); err != nil {
				h.s.logger.WarnContext(ctx, "nri: evict container", "id", id, "error", err)
			}
		})
	}
	return nil
}

// nriKnown tells NRI, after a restart, which pods and containers exist.
func (s *Service) nriKnown() {
	if !s.nri.Enabled() {
		return
	}
	pods, ctrs := nriHost{s}.List(context.Background())
	notReady := map[string]bool{}
	for _, sb := range s.store.Sandboxes.List() {
		if !sb.Ready {
			notReady[sb.ID] = true
		}
	}
	s.nri.Known(pods, notReady, ctrs)
}

// nriStatus is NRI's part of verbose Status (crictl info).
func (s *Service) nriStatus() map[string]any {
	if !s.nri.Enabled() {
		return map[string]any{"enabled": false}
	}
	connected, invoked := s.nri.Stats().Plugins()
	return map[string]any{
		"enabled":           true,
		"socket_path":       s.cfg.NRI.SocketPath,
		"plugins_connected": connected,
		"plugins_invoked":   invoked, // names of plugins relayed an event so far
	}
}

// StartNRI tells NRI which pods and containers exist, then starts the
// pre-installed plugins and listens for others. Call it after Recover.
func (s *Service) StartNRI() error {
	s.nriKnown()
	return s.nri.Start()
}
