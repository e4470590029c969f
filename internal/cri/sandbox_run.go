package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	nriapi "github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/sysinfo"
)

// RunPodSandbox makes a pod: pinned namespaces, /etc files and /dev/shm,
// and its monitor process. No pause container runs unless the classic mode
// is configured (sandbox_pause.go). On failure nothing is left behind.
func (s *Service) RunPodSandbox(ctx context.Context, r *runtime.RunPodSandboxRequest) (_ *runtime.RunPodSandboxResponse, retErr error) {
	cfg := r.GetConfig()
	if err := validatePodConfig(cfg); err != nil {
		return nil, err
	}
	// From here on the pod is made to the end or rolled back completely,
	// whatever the caller does meanwhile (a retry meets the reserved name).
	ctx, cancel := detach(ctx, opTimeout)
	defer cancel()
	handler, err := s.handlerSet().Get(r.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(handler.Path); err != nil {
		return nil, fmt.Errorf("runtime handler %q: its runtime %q is not installed: %w", handler.Name, handler.Path, errdefs.ErrFailedPrecondition)
	}
	if userns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions(); userns != nil && userns.GetMode() == runtime.NamespaceMode_POD {
		const field = "config.linux.security_context.namespace_options.userns_options"
		if !s.handlerSet().Features(ctx, handler).UserNamespaces {
			return nil, fmt.Errorf("%s: runtime handler %q cannot run a pod in a user namespace (its runtime makes no idmapped mounts): %w", field, handler.Name, errdefs.ErrFailedPrecondition)
		}
		if sn := s.images.SnapshotterName(); !image.CanIDMap(sn) {
			return nil, fmt.Errorf("%s: the %s snapshotter cannot map a container's files into a user namespace (overlayfs can): %w", field, sn, errdefs.ErrFailedPrecondition)
		}
	}
	raw, err := proto.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	m := cfg.GetMetadata()
	sb := store.Sandbox{
		ID:             store.NewID(),
		Metadata:       store.PodMetadata{Name: m.GetName(), UID: m.GetUid(), Namespace: m.GetNamespace(), Attempt: m.GetAttempt()},
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: r.GetRuntimeHandler(),
		CreatedAt:      time.Now().UTC(),
		Config:         raw,
		CgroupParent:   cfg.GetLinux().GetCgroupParent(),
		MonitorSocket:  "",
	}
	if err := s.store.Sandboxes.ReserveName(sb.UniqueName(), sb.ID); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			s.store.Sandboxes.ReleaseName(sb.UniqueName(), sb.ID)
		}
	}()

	dir := s.layout().Pod(sb.ID).Dir()
	endPhase := s.phase(ctx, metrics.PhaseNamespaces)
	paths, err := s.namespaces.Create(sandbox.Spec{Dir: dir, Config: cfg})
	endPhase()
	if err != nil {
		return nil, fmt.Errorf("create pod namespaces: %w", err)
	}
	defer func() {
		if retErr != nil {
			if err := s.namespaces.Remove(dir); err != nil {
				s.logger.Error("clean up failed pod", "id", sb.ID, "error", err)
			}
		}
	}()
	sb.Paths = store.SandboxPaths(paths)
	if sb.Paths.NetNS != "" {
		// Recovery detaches a pod that a crash left unrecorded from its
		// network with this: CNI DEL needs the pod's ID, config and netns.
		if err := atomicfile.Write(layout.Pod(dir).Config(), raw, 0o600); err != nil {
			return nil, err
		}
		start := time.Now()
		endPhase = s.phase(ctx, metrics.PhaseCNIAdd)
		sb.IPs, err = s.podNetwork().Setup(ctx, podNetwork(sb, cfg))
		endPhase()
		s.metrics.CNI("add", time.Since(start), err)
		s.logger.DebugContext(ctx, "cni add", "id", sb.ID, "duration", time.Since(start), "error", err)
		if err != nil {
			return nil, fmt.Errorf("pod network: %w", err)
		}
		sb.NetworkAttached = true
		defer func() {
			if retErr != nil {
				ctx, cancel := cleanupContext(ctx)
				defer cancel()
				if err := s.podNetwork().Teardown(ctx, podNetwork(sb, cfg)); err != nil {
					s.logger.Error("detach failed pod from its network", "id", sb.ID, "error", err)
				}
			}
		}()
	}
	sb.MonitorSocket = s.layout().MonitorSocket(sb.ID)
	if err := os.MkdirAll(filepath.Dir(sb.MonitorSocket), 0o700); err != nil {
		return nil, err
	}
	endPhase = s.phase(ctx, metrics.PhaseMonitorLaunch)
	pid, err := s.monitors.Launch(ctx, monitor.LaunchOptions{
		Binary:   s.monitorBinary,
		Socket:   sb.MonitorSocket,
		RuncPath: handler.Path,
		RuncRoot: handler.Root,
		LogPath:  layout.Pod(dir).MonitorLog(),
	})
	endPhase()
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = syscallKill(pid)
		}
	}()
	sb.MonitorPid = pid
	sharedPID := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtime.NamespaceMode_POD
	endPhase = s.phase(ctx, metrics.PhasePodInit)
	// The monitor's PID namespace init would belong to the host's user
	// namespace, which a container in the pod's cannot join: a pod in a user
	// namespace that shares its PID namespace gets a pause container, which
	// the runtime starts inside the pod's user namespace.
	if s.cfg.Runtime.PauseContainer || (sb.Paths.UserNS != "" && sharedPID) {
		if sb.PausePid, err = s.startPauseContainer(ctx, sb, cfg); err != nil {
			return nil, err
		}
		sb.PauseContainer = true
		defer func() {
			if retErr != nil {
				ctx, cancel := cleanupContext(ctx)
				defer cancel()
				if err := errors.Join(s.stopPauseContainer(ctx, sb), s.removePauseContainer(ctx, sb)); err != nil {
					s.logger.Error("clean up pause container of failed pod", "id", sb.ID, "error", err)
				}
			}
		}()
	} else if sharedPID {
		if sb.PausePid, err = s.monitors.Client(sb.MonitorSocket).Pause(ctx); err != nil {
			return nil, fmt.Errorf("start the pod's PID namespace init: %w", err)
		}
	}
	endPhase()
	// Plugins hear of the pod before anyone else can see it, and may veto
	// it; none synchronizes between their hearing and the record.
	unblock := s.nri.BlockSync()
	defer unblock()
	var pod *nriapi.PodSandbox
	if s.nri.Enabled() {
		pod = nriPod(sb)
	}
	if err := s.nri.RunPodSandbox(ctx, pod); err != nil {
		s.nriPodFailed(ctx, pod)
		return nil, nriRefused("the pod", err)
	}
	defer func() {
		if retErr != nil {
			s.nriPodFailed(ctx, pod)
		}
	}()
	sb.Ready = true
	endPhase = s.phase(ctx, metrics.PhaseStore)
	err = s.store.Sandboxes.Add(sb)
	endPhase()
	if err != nil {
		return nil, err
	}
	s.watch(ctx, sb.ID)
	s.logger.InfoContext(ctx, "pod sandbox running", "id", sb.ID, "name", sb.UniqueName(), "monitor_pid", pid)
	return &runtime.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
}

// nriPodFailed tells plugins that a pod they heard of was not made after
// all (one of them vetoed it, or a later step failed).
func (s *Service) nriPodFailed(ctx context.Context, pod *nriapi.PodSandbox) {
	if !s.nri.Enabled() {
		return
	}
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := s.nri.RemovePodSandbox(ctx, pod); err != nil {
		s.logger.WarnContext(ctx, "nri: RemovePodSandbox of a pod not made", "id", pod.GetId(), "error", err)
	}
}

// podNetwork is what CNI is told about a pod.
func podNetwork(sb store.Sandbox, cfg *runtime.PodSandboxConfig) network.Pod {
	// Checked by validatePodConfig before the pod was made.
	bw, _ := network.Bandwidth(cfg.GetAnnotations())
	return network.Pod{
		ID: sb.ID, Name: sb.Metadata.Name, Namespace: sb.Metadata.Namespace, UID: sb.Metadata.UID,
		NetNS: sb.Paths.NetNS, Ports: cfg.GetPortMappings(), DNS: cfg.GetDnsConfig(), Bandwidth: bw,
	}
}

// detachNetwork runs CNI DEL for an attached pod. The caller records it
// (NetworkAttached = false) with whatever else it changes, in one write;
// CNI DEL is idempotent, so a crash before that write only repeats it.
func (s *Service) detachNetwork(ctx context.Context, sb store.Sandbox) error {
	if !sb.NetworkAttached {
		return nil
	}
	var cfg runtime.PodSandboxConfig
	if err := proto.Unmarshal(sb.Config, &cfg); err != nil {
		return fmt.Errorf("decode config of pod %s: %w", sb.ID, err)
	}
	start := time.Now()
	_, span := s.tracer.Start(ctx, "cni_del")
	err := s.podNetwork().Teardown(ctx, podNetwork(sb, &cfg))
	span.End()
	s.metrics.CNI("del", time.Since(start), err)
	s.logger.DebugContext(ctx, "cni del", "id", sb.ID, "duration", time.Since(start), "error", err)
	if err != nil {
		if !errors.Is(err, network.ErrNoConfig) {
			return fmt.Errorf("detach pod %s from its network: %w", sb.ID, err)
		}
		// Nothing can run DEL; keeping the pod forever would not free the
		// IP either. Say so and go on.
		s.logger.WarnContext(ctx, "pod network not detached: no CNI config", "id", sb.ID, "ips", sb.IPs)
	}
	return nil
}

func validatePodConfig(cfg *runtime.PodSandboxConfig) error {
	if cfg == nil {
		return fmt.Errorf("config must be set: %w", errdefs.ErrInvalidArgument)
	}
	m := cfg.GetMetadata()
	if m == nil {
		return fmt.Errorf("config.metadata must be set: %w", errdefs.ErrInvalidArgument)
	}
	for field, v := range map[string]string{"name": m.GetName(), "uid": m.GetUid(), "namespace": m.GetNamespace()} {
		if v == "" {
			return fmt.Errorf("config.metadata.%s must not be empty: %w", field, errdefs.ErrInvalidArgument)
		}
	}
	if d := cfg.GetLogDirectory(); d != "" && !filepath.IsAbs(d) {
		return fmt.Errorf("config.log_directory %q must be an absolute path: %w", d, errdefs.ErrInvalidArgument)
	}
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if _, err := network.Bandwidth(cfg.GetAnnotations()); err != nil {
		return fmt.Errorf("config.annotations: %w", err)
	}
	if err := spec.CheckSELinux("config.linux.security_context.selinux_options", cfg.GetLinux().GetSecurityContext().GetSelinuxOptions(), sysinfo.SELinuxEnabled()); err != nil {
		return err
	}
	if err := checkUserns(ns); err != nil {
		return fmt.Errorf("config.linux.security_context.namespace_options.userns_options: %w", err)
	}
	for key := range cfg.GetLinux().GetSysctls() {
		if err := checkSysctl(key, ns); err != nil {
			return fmt.Errorf("config.linux.sysctls[%q]: %w", key, err)
		}
	}
	return nil
}

// checkUserns accepts the host's user namespace (NODE, or nothing asked)
// or one per pod (POD) with a single uid and a single gid mapping that
// maps container ID 0, as kubelet asks for. A pod in its own user
// namespace cannot use the host's network, IPC or PID namespace (kubelet
// never asks for that: hostUsers false excludes them).
func checkUserns(ns *runtime.NamespaceOption) error {
	u := ns.GetUsernsOptions()
	if u == nil {
		return nil // unset is the host's (the mode's zero value is POD)
	}
	switch u.GetMode() {
	case runtime.NamespaceMode_NODE:
		return nil
	case runtime.NamespaceMode_POD:
	default:
		return fmt.Errorf("mode %s: a user namespace is the pod's (POD) or the host's (NODE): %w", u.GetMode(), errdefs.ErrInvalidArgument)
	}
	for kind, maps := range map[string][]*runtime.IDMapping{"uids": u.GetUids(), "gids": u.GetGids()} {
		if len(maps) != 1 {
			return fmt.Errorf("%s: exactly one mapping, not %d: %w", kind, len(maps), errdefs.ErrInvalidArgument)
		}
		m := maps[0]
		if m.GetContainerId() != 0 || m.GetLength() == 0 {
			return fmt.Errorf("%s: the mapping must start at container ID 0 and not be empty: %w", kind, errdefs.ErrInvalidArgument)
		}
		if uint64(m.GetHostId())+uint64(m.GetLength()) > 1<<32-1 {
			return fmt.Errorf("%s: host IDs %d..%d exceed the largest ID: %w", kind, m.GetHostId(), uint64(m.GetHostId())+uint64(m.GetLength())-1, errdefs.ErrInvalidArgument)
		}
	}
	for kind, mode := range map[string]runtime.NamespaceMode{"network": ns.GetNetwork(), "ipc": ns.GetIpc(), "pid": ns.GetPid()} {
		if mode == runtime.NamespaceMode_NODE {
			return fmt.Errorf("a pod in its own user namespace cannot use the host's %s namespace: %w", kind, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// ipcSysctls are the IPC-namespaced sysctls besides fs.mqueue.*.
var ipcSysctls = []string{"kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni"}

// checkSysctl allows only sysctls of a namespace the pod has of its own:
// any other would change the host.
func checkSysctl(key string, ns *runtime.NamespaceOption) error {
	name := strings.ReplaceAll(key, "/", ".")
	switch {
	case slices.Contains(ipcSysctls, name) || strings.HasPrefix(name, "fs.mqueue."):
		if ns.GetIpc() == runtime.NamespaceMode_NODE {
			return fmt.Errorf("an IPC sysctl cannot be set in a pod that uses the host's IPC namespace: %w", errdefs.ErrInvalidArgument)
		}
	case strings.HasPrefix(name, "net."):
		if ns.GetNetwork() == runtime.NamespaceMode_NODE {
			return fmt.Errorf("a network sysctl cannot be set in a pod on the host's network: %w", errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("not a namespaced sysctl: setting it would change the host: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
