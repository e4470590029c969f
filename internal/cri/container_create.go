package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-cri/berth/internal/metrics"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/sysinfo"
)

// CreateContainer prepares a container in a ready pod: a writable snapshot
// of its image mounted as rootfs, and an OCI bundle whose spec joins the
// pod's namespaces and cgroup. Nothing runs until StartContainer. On
// failure nothing is left behind.
func (s *Service) CreateContainer(ctx context.Context, r *runtime.CreateContainerRequest) (_ *runtime.CreateContainerResponse, retErr error) {
	cfg := r.GetConfig()
	if cfg.GetMetadata().GetName() == "" {
		return nil, fmt.Errorf("config.metadata.name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, fmt.Errorf("config.image.image must name an image: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkResources(cfg.GetLinux().GetResources(), "config.linux.resources"); err != nil {
		return nil, err
	}
	sb, err := s.store.Sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	// Shared with other creates, exclusive of StopPodSandbox and
	// RemovePodSandbox: a container is never made in a pod being torn down.
	unlock, err := s.lockPodShared(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx, cancel := detach(ctx, opTimeout)
	defer cancel()
	if sb, err = s.store.Sandboxes.Get(sb.ID); err != nil {
		return nil, err // removed while we waited
	}
	if !sb.Ready {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	var podCfg runtime.PodSandboxConfig
	if err := proto.Unmarshal(sb.Config, &podCfg); err != nil {
		return nil, fmt.Errorf("decode pod config: %w", err)
	}
	pidNS := ""
	if sb.PausePid > 0 && podCfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtime.NamespaceMode_POD {
		pidNS = fmt.Sprintf("/proc/%d/ns/pid", sb.PausePid)
	}
	if sb.Paths.UserNS != "" && cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtime.NamespaceMode_NODE {
		return nil, fmt.Errorf("config.linux.security_context.namespace_options.pid: a container in its pod's user namespace cannot use the host's PID namespace: %w", errdefs.ErrInvalidArgument)
	}
	if opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); opts.GetPid() == runtime.NamespaceMode_TARGET {
		if pidNS, err = s.targetPIDNamespace(sb.ID, opts.GetTargetId()); err != nil {
			return nil, err
		}
	}
	endPhase := s.phase(ctx, metrics.PhaseImage)
	img, err := s.images.Get(cfg.GetImage().GetImage())
	endPhase()
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("image %q is not present: pull it first: %w", cfg.GetImage().GetImage(), errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	logFile, err := containerLogFile(podCfg.GetLogDirectory(), cfg.GetLogPath())
	if err != nil {
		return nil, err
	}
	if err := makeMissingHostPaths(cfg.GetMounts()); err != nil {
		return nil, err
	}
	if logFile != "" {
		// As containerd does: CRI clients other than kubelet rely on it. The
		// monitor makes the file's own directories, beneath this one.
		if err := os.MkdirAll(podCfg.GetLogDirectory(), 0o755); err != nil {
			return nil, fmt.Errorf("pod log_directory %q: %v: %w", podCfg.GetLogDirectory(), err, errdefs.ErrFailedPrecondition)
		}
	}
	raw, err := proto.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	c := store.Container{
		ID:          store.NewID(),
		SandboxID:   sb.ID,
		Metadata:    store.ContainerMetadata{Name: cfg.GetMetadata().GetName(), Attempt: cfg.GetMetadata().GetAttempt()},
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		Image:       cfg.GetImage().GetImage(),
		ImageID:     img.ID,
		LogPath:     cfg.GetLogPath(),
		LogFile:     logFile,
		Config:      raw,
		StopSignal:  img.Config.Config.StopSignal,
		CreatedAt:   time.Now().UTC(),
	}
	c.Bundle = s.layout().Container(c.ID).Dir()
	c.SnapshotKey = c.ID
	if err := s.store.Containers.ReserveName(c.UniqueName(), c.ID); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			s.store.Containers.ReleaseName(c.UniqueName(), c.ID)
		}
	}()

	rootfs := layout.Bundle(c.Bundle).Rootfs()
	pod := specPod(sb, &podCfg, pidNS)
	if err := makeBundleDir(c.Bundle, pod.GIDs); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			ctx, cancel := cleanupContext(ctx)
			defer cancel()
			if err := s.cleanupBundle(ctx, c); err != nil {
				s.logger.Error("clean up failed container create", "id", c.ID, "error", err)
			}
		}
	}()
	endPhase = s.phase(ctx, metrics.PhaseSnapshot)
	err = s.images.MountRootfs(ctx, c.SnapshotKey, img.ChainID.String(), rootfs, pod.UIDs, pod.GIDs)
	endPhase()
	if err != nil {
		return nil, err
	}
	volumes, err := s.mountImageVolumes(ctx, c, cfg.GetMounts(), pod.UIDs, pod.GIDs)
	if err != nil {
		return nil, err
	}
	// The config as recorded carries each image volume's resolved image,
	// which ContainerStatus reports.
	if c.Config, err = proto.Marshal(cfg); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	endPhase = s.phase(ctx, metrics.PhaseSpec)
	ociSpec, err := spec.Build(spec.Input{
		ID:                 c.ID,
		Config:             cfg,
		Image:              img.Config,
		Pod:                pod,
		Rootfs:             rootfs,
		CgroupDriver:       s.cgroupDriver,
		OOMScoreAdjFloor:   s.oomFloor,
		CapabilityBounding: s.capBounding,
		RecursiveReadOnly:  s.handlerSet().Features(ctx, s.handlerOf(sb)).RecursiveReadOnlyMounts,
		ImageVolumes:       volumes,
		AppArmorProfiles:   sysinfo.AppArmorProfiles(),
		SELinux:            sysinfo.SELinuxEnabled(),
	})
	if err != nil {
		return nil, err
	}
	if err := s.injectCDIDevices(cfg, ociSpec); err != nil {
		return nil, err
	}
	c.CgroupsPath = ociSpec.Linux.CgroupsPath
	// Plugins adjust the spec before anyone can see the container, and
	// may veto it; none synchronizes between their hearing and the record.
	unblock := s.nri.BlockSync()
	defer unblock()
	if err := s.nriAdjust(ctx, sb, &c, ociSpec); err != nil {
		s.nriCreateFailed(ctx, sb, c)
		return nil, err
	}
	defer func() {
		if retErr != nil {
			s.nriCreateFailed(ctx, sb, c)
		}
	}()
	c.User = recordedUser(ociSpec)
	b, err := json.MarshalIndent(ociSpec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode runtime spec: %w", err)
	}
	if err := os.WriteFile(layout.Bundle(c.Bundle).Spec(), b, 0o600); err != nil {
		return nil, err
	}
	endPhase()
	endPhase = s.phase(ctx, metrics.PhaseStore)
	err = s.store.Containers.Add(c)
	endPhase()
	if err != nil {
		return nil, err
	}
	unblock()
	if s.nri.Enabled() {
		if err := s.nri.PostCreateContainer(ctx, nriPod(sb), nriContainer(c, ociSpec)); err != nil {
			s.logger.WarnContext(ctx, "nri: PostCreateContainer", "id", c.ID, "error", err)
		}
	}
	s.logger.InfoContext(ctx, "container created", "id", c.ID, "pod", sb.ID, "name", c.Metadata.Name, "image", img.ID)
	return &runtime.CreateContainerResponse{ContainerId: c.ID}, nil
}

// nriCreateFailed tells plugins that a container they adjusted was not
// made after all.
func (s *Service) nriCreateFailed(ctx context.Context, sb store.Sandbox, c store.Container) {
	if !s.nri.Enabled() {
		return
	}
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	s.nri.UndoCreateContainer(ctx, nriPod(sb), nriContainer(c, nil))
}

// targetPIDNamespace is the PID namespace of container id, which a container
// with PID namespace mode TARGET joins (an ephemeral debug container
// looking at its target's processes): a running container of the same pod.
func (s *Service) targetPIDNamespace(podID, id string) (string, error) {
	const field = "config.linux.security_context.namespace_options.target_id"
	if id == "" {
		return "", fmt.Errorf("%s must name a container when pid is TARGET: %w", field, errdefs.ErrInvalidArgument)
	}
	t, err := s.store.Containers.Get(id)
	if errdefs.IsNotFound(err) {
		return "", fmt.Errorf("%s: container %q not found: %w", field, id, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	if t.SandboxID != podID {
		return "", fmt.Errorf("%s: container %s is in another pod: %w", field, t.ID, errdefs.ErrInvalidArgument)
	}
	if t.State() != store.ContainerRunning || t.Pid <= 0 {
		return "", fmt.Errorf("%s: container %s is not running: %w", field, t.ID, errdefs.ErrFailedPrecondition)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", t.Pid), nil
}

// specPod is what a container's spec takes from its pod: the pinned
// namespaces (and the shared PID namespace, pidNS, if any), the /etc files,
// /dev/shm and the cgroup parent.
func specPod(sb store.Sandbox, cfg *runtime.PodSandboxConfig, pidNS string) spec.Pod {
	p := spec.Pod{
		ID: sb.ID, Config: cfg,
		NetNS: sb.Paths.NetNS, IPCNS: sb.Paths.IPCNS, UTSNS: sb.Paths.UTSNS, PIDNS: pidNS,
		Hostname: sb.Paths.Hostname, Hosts: sb.Paths.Hosts, ResolvConf: sb.Paths.ResolvConf, Shm: sb.Paths.Shm,
		CgroupParent: sb.CgroupParent,
	}
	if sb.Paths.UserNS != "" {
		userns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
		p.UserNS, p.UIDs, p.GIDs = sb.Paths.UserNS, spec.IDMaps(userns.GetUids()), spec.IDMaps(userns.GetGids())
	}
	return p
}

// makeMissingHostPaths creates, as directories (0755), the host paths of
// bind mounts that do not exist, as containerd and CRI-O do: kubelet's
// hostPath volumes of no particular type rely on it.
func makeMissingHostPaths(mounts []*runtime.Mount) error {
	for i, m := range mounts {
		hp := m.GetHostPath()
		if hp == "" || m.GetImage().GetImage() != "" {
			continue
		}
		if !filepath.IsAbs(hp) {
			return fmt.Errorf("config.mounts[%d].host_path %q must be absolute: %w", i, hp, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Lstat(hp); !errors.Is(err, os.ErrNotExist) {
			continue // there (or a dangling link, which the spec refuses)
		}
		if err := os.MkdirAll(hp, 0o755); err != nil {
			return fmt.Errorf("config.mounts[%d].host_path %q: %v: %w", i, hp, err, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

// containerLogFile joins the pod's log directory and the container's
// log_path, refusing a path that would leave the directory.
func containerLogFile(dir, rel string) (string, error) {
	if rel == "" {
		return "", nil
	}
	if dir == "" {
		return "", fmt.Errorf("config.log_path %q needs the pod's log_directory: %w", rel, errdefs.ErrInvalidArgument)
	}
	p := filepath.Join(dir, rel)
	if filepath.IsAbs(rel) || !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
		return "", fmt.Errorf("config.log_path %q must name a file inside the pod's log directory: %w", rel, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// cleanupBundle unmounts the image volumes and the rootfs (which the
// monitor unmounts already when the container exits), then removes the
// rootfs snapshot and the bundle — at once: they are independent once
// nothing is mounted. A directory that may still hold a mount is never
// deleted.
func (s *Service) cleanupBundle(ctx context.Context, c store.Container) error {
	if err := s.unmountImageVolumes(ctx, c); err != nil {
		return err
	}
	if err := image.Unmount(layout.Bundle(c.Bundle).Rootfs()); err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	snapshotErr := make(chan error, 1)
	go func() { snapshotErr <- s.images.RemoveSnapshot(ctx, c.SnapshotKey) }()
	dirErr := os.RemoveAll(c.Bundle)
	if err := <-snapshotErr; err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	if dirErr != nil {
		return fmt.Errorf("remove bundle of container %s: %w", c.ID, dirErr)
	}
	return nil
}
