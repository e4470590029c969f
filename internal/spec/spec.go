// Package spec builds a container's OCI runtime spec from its CRI config,
// its pod's config and the image config: the process (command, env, user,
// capabilities), the mounts (the pod's /etc files and /dev/shm, CRI mounts),
// and the namespaces and cgroup that place it in its pod.
package spec

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod is what a container takes from its sandbox.
type Pod struct {
	ID     string
	Config *runtime.PodSandboxConfig
	// Namespace files pinned by the sandbox ("" where the pod uses the
	// host's namespace).
	NetNS, IPCNS, UTSNS string
	// PIDNS is the PID namespace to join: the pod's shared one when
	// namespace_options.pid is POD, the target container's when TARGET.
	PIDNS string
	// UserNS is the pod's pinned user namespace ("" for the host's) and
	// UIDs, GIDs its mappings: the pod's files and volumes are mounted
	// idmapped with them, so their owners show inside as on the host.
	UserNS     string
	UIDs, GIDs []specs.LinuxIDMapping
	// Files the sandbox wrote, bind-mounted into every container.
	Hostname, Hosts, ResolvConf, Shm string
	// CgroupParent is the pod's cgroup (cgroupfs path or systemd slice).
	CgroupParent string
}

// Input is everything a container's spec is built from.
type Input struct {
	ID     string
	Config *runtime.ContainerConfig
	Image  imagespec.Image
	Pod    Pod
	// Rootfs is the container's mounted root file system (for /etc/passwd).
	Rootfs string
	// CgroupDriver is "cgroupfs" or "systemd".
	CgroupDriver string
	// OOMScoreAdjFloor, when set, is the lowest oom_score_adj the daemon
	// may give: its own, when it lacks CAP_SYS_RESOURCE. Lower requests are
	// raised to it instead of failing the start.
	OOMScoreAdjFloor *int
	// CapabilityBounding is the daemon's bounding set (bit n = capability
	// n); "all capabilities" means all of these. 0 means every capability.
	CapabilityBounding uint64
	// RecursiveReadOnly says the runtime handler can make recursive
	// read-only mounts ("rro").
	RecursiveReadOnly bool
	// AppArmorProfiles are the host's loaded AppArmor profiles; nil when
	// the host has no AppArmor.
	AppArmorProfiles map[string]bool
	// SELinux says the host runs SELinux (see CheckSELinux).
	SELinux bool
	// ImageVolumes are, by index in Config.Mounts, the host directories the
	// image volumes (Mount.image) bind: read-only views of their images.
	ImageVolumes map[int]string
}

// ociVersion is the runtime-spec version berth's specs declare: the newest
// that both Debian 12's runc (1.1.5) and crun (1.8.1, which refuses 1.2)
// accept. The specs use nothing newer.
const ociVersion = "1.1.0"

// defaultCapabilities are the capabilities a non-privileged container gets,
// the set container runtimes have long agreed on.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

var defaultMaskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

var defaultReadonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// Build returns the container's OCI spec. Errors a client caused are
// InvalidArgument and name the field.
func Build(in Input) (*specs.Spec, error) {
	cfg := in.Config
	sc := cfg.GetLinux().GetSecurityContext()
	args, err := command(cfg, in.Image.Config)
	if err != nil {
		return nil, err
	}
	user, err := resolveUser(in.Rootfs, sc, in.Image.Config.User)
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(sc, in.CapabilityBounding)
	if err != nil {
		return nil, err
	}
	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = in.Image.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	s := &specs.Spec{
		Version: ociVersion,
		Process: &specs.Process{
			Terminal:        cfg.GetTty(),
			User:            user,
			Args:            args,
			Env:             environment(in.Image.Config.Env, cfg.GetEnvs()),
			Cwd:             cwd,
			Capabilities:    caps,
			NoNewPrivileges: sc.GetNoNewPrivs(),
		},
		Root: &specs.Root{Path: in.Rootfs, Readonly: sc.GetReadonlyRootfs()},
		Annotations: map[string]string{
			"io.kubernetes.cri.container-type": "container",
			"io.kubernetes.cri.container-name": cfg.GetMetadata().GetName(),
			"io.kubernetes.cri.sandbox-id":     in.Pod.ID,
		},
		Linux: &specs.Linux{
			Namespaces:  namespaces(in.Pod, sc.GetNamespaceOptions()),
			Resources:   Resources(cfg.GetLinux().GetResources()),
			CgroupsPath: cgroupsPath(in.CgroupDriver, in.Pod.CgroupParent, in.ID),
			Sysctl:      in.Pod.Config.GetLinux().GetSysctls(),
		},
	}
	for k, v := range cfg.GetAnnotations() {
		s.Annotations[k] = v
	}
	adj := int(cfg.GetLinux().GetResources().GetOomScoreAdj())
	if in.OOMScoreAdjFloor != nil {
		adj = max(adj, *in.OOMScoreAdjFloor)
	}
	s.Process.OOMScoreAdj = &adj
	if !sc.GetPrivileged() {
		s.Linux.MaskedPaths = defaultMaskedPaths
		s.Linux.ReadonlyPaths = defaultReadonlyPaths
	}
	if mp := sc.GetMaskedPaths(); mp != nil {
		s.Linux.MaskedPaths = mp
	}
	if rp := sc.GetReadonlyPaths(); rp != nil {
		s.Linux.ReadonlyPaths = rp
	}
	if err := applySeccomp(s, sc); err != nil {
		return nil, err
	}
	if err := applyAppArmor(s, sc, in.AppArmorProfiles); err != nil {
		return nil, err
	}
	if err := CheckSELinux("linux.security_context.selinux_options", sc.GetSelinuxOptions(), in.SELinux); err != nil {
		return nil, err
	}
	if s.Linux.Devices, s.Linux.Resources.Devices, err = devices(cfg, sc.GetPrivileged()); err != nil {
		return nil, err
	}
	mounts, err := mountList(in, sc.GetPrivileged())
	if err != nil {
		return nil, err
	}
	s.Mounts = mounts
	s.Linux.RootfsPropagation = rootfsPropagation(cfg.GetMounts())
	return s, nil
}

// rootfsPropagation is what the container's root mount needs for its
// volumes' propagation to work: mounts made in the container reach the
// host only from a shared root, and host mounts reach the container only
// from a shared or slave one. "" leaves the runtime's default (private).
func rootfsPropagation(mounts []*runtime.Mount) string {
	out := ""
	for _, m := range mounts {
		switch m.GetPropagation() {
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			return "rshared"
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			out = "rslave"
		}
	}
	return out
}

// command applies kubelet's rules: command replaces the image's entrypoint
// (and then the image's cmd is dropped), args replace the image's cmd.
func command(cfg *runtime.ContainerConfig, img imagespec.ImageConfig) ([]string, error) {
	entrypoint, cmd := img.Entrypoint, img.Cmd
	if len(cfg.GetCommand()) > 0 {
		entrypoint, cmd = cfg.GetCommand(), nil
	}
	if len(cfg.GetArgs()) > 0 {
		cmd = cfg.GetArgs()
	}
	args := append(slices.Clone(entrypoint), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("container config has no command and the image has no entrypoint or cmd: %w", errdefs.ErrInvalidArgument)
	}
	return args, nil
}

// environment merges the image's env with the container's; the container's
// value wins for a repeated key.
func environment(image []string, kvs []*runtime.KeyValue) []string {
	out := slices.Clone(image)
	index := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	for _, kv := range kvs {
		e := kv.GetKey() + "=" + string(kv.GetValue())
		if i, ok := index[kv.GetKey()]; ok {
			out[i] = e
			continue
		}
		index[kv.GetKey()] = len(out)
		out = append(out, e)
	}
	return out
}

func capabilities(sc *runtime.LinuxContainerSecurityContext, bounding uint64) (*specs.LinuxCapabilities, error) {
	all := allCapabilities()
	if bounding != 0 {
		// Only what the daemon itself holds can be granted: without, say,
		// CAP_SYS_RESOURCE (these machines) runc fails "unable to apply caps".
		all = slices.DeleteFunc(all, func(c string) bool {
			return bounding&(1<<slices.Index(allCapabilities(), c)) == 0
		})
	}
	var set []string
	if sc.GetPrivileged() {
		set = all
	} else {
		set = slices.Clone(defaultCapabilities)
		add, drop := sc.GetCapabilities().GetAddCapabilities(), sc.GetCapabilities().GetDropCapabilities()
		if slices.ContainsFunc(add, isAll) {
			set = all
		}
		if slices.ContainsFunc(drop, isAll) {
			set = nil
		}
		for _, c := range add {
			if isAll(c) {
				continue
			}
			name, err := grantable(c, all, "linux.security_context.capabilities")
			if err != nil {
				return nil, err
			}
			if !slices.Contains(set, name) {
				set = append(set, name)
			}
		}
		for _, c := range drop {
			if isAll(c) {
				continue
			}
			name, err := capName(c)
			if err != nil {
				return nil, err
			}
			set = slices.DeleteFunc(set, func(s string) bool { return s == name })
		}
	}
	// Ambient capabilities survive the exec of a non-root process; the
	// kernel keeps only those also permitted and inheritable.
	var ambient []string
	for _, c := range sc.GetCapabilities().GetAddAmbientCapabilities() {
		name, err := grantable(c, all, "linux.security_context.capabilities.add_ambient_capabilities")
		if err != nil {
			return nil, err
		}
		if !slices.Contains(set, name) {
			set = append(set, name)
		}
		if !slices.Contains(ambient, name) {
			ambient = append(ambient, name)
		}
	}
	return &specs.LinuxCapabilities{Bounding: set, Effective: set, Permitted: set, Inheritable: ambient, Ambient: ambient}, nil
}

func isAll(c string) bool { return strings.EqualFold(c, "ALL") }

// grantable is capability c's name when a container may have it: it must
// exist and be within all, the daemon's own bounding set.
func grantable(c string, all []string, field string) (string, error) {
	name, err := capName(c)
	if err != nil {
		return "", err
	}
	if !slices.Contains(all, name) {
		return "", fmt.Errorf("%s: %s is outside berth's own bounding set, so no container can have it: %w", field, name, errdefs.ErrFailedPrecondition)
	}
	return name, nil
}

func capName(c string) (string, error) {
	name := strings.ToUpper(c)
	if !strings.HasPrefix(name, "CAP_") {
		name = "CAP_" + name
	}
	if !slices.Contains(allCapabilities(), name) {
		return "", fmt.Errorf("linux.security_context.capabilities: unknown capability %q: %w", c, errdefs.ErrInvalidArgument)
	}
	return name, nil
}

// allCapabilities are the capabilities of kernel 5.9+, in kernel order: the
// index is the capability's number (CAP_CHECKPOINT_RESTORE is 40).
func allCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
		"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
		"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
		"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
		"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
		"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

// namespaces places the container in its pod: the pod's pinned user,
// network, IPC and UTS namespaces (or the host's), a PID namespace of its
// own unless the pod shares one, it joins another container's (TARGET) or
// it uses the host's, and always its own mount namespace.
func namespaces(pod Pod, opts *runtime.NamespaceOption) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if pod.UserNS != "" {
		// Joined first by the runtime; the pod's other namespaces are its.
		ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace, Path: pod.UserNS})
	}
	if pod.NetNS != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: pod.NetNS})
	}
	if pod.IPCNS != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: pod.IPCNS})
	}
	if pod.UTSNS != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UTSNamespace, Path: pod.UTSNS})
	}
	switch opts.GetPid() {
	case runtime.NamespaceMode_NODE:
	case runtime.NamespaceMode_POD, runtime.NamespaceMode_TARGET:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: pod.PIDNS})
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	return ns
}

// Resources is the OCI form of a container's CRI resources (no device rules).
func Resources(r *runtime.LinuxContainerResources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if r == nil {
		return out
	}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := uint64(r.GetCpuShares()); v > 0 {
		cpu.Shares = &v
	}
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota = &v
	}
	if v := uint64(r.GetCpuPeriod()); v > 0 {
		cpu.Period = &v
	}
	out.CPU = cpu
	if v := r.GetMemoryLimitInBytes(); v > 0 {
		out.Memory = &specs.LinuxMemory{Limit: &v}
		if sw := r.GetMemorySwapLimitInBytes(); sw > 0 {
			out.Memory.Swap = &sw
		}
	}
	if len(r.GetUnified()) > 0 {
		out.Unified = r.GetUnified()
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}

// cgroupsPath is runc's cgroupsPath for the container: a path under the
// pod's cgroup with cgroupfs, "slice:prefix:name" with systemd.
func cgroupsPath(driver, parent, id string) string {
	if driver == "systemd" {
		if parent == "" {
			parent = "system.slice"
		}
		return parent + ":berth:" + id
	}
	if parent == "" {
		parent = "/berth"
	}
	return path.Join("/", parent, id)
}

// mountList is the default mounts, the pod's files, then the CRI mounts; a
// CRI mount replaces a default at the same destination.
func mountList(in Input, privileged bool) ([]specs.Mount, error) {
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	if privileged {
		sysOpts = []string{"nosuid", "noexec", "nodev", "rw"}
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	bind := func(dst, src string, ro bool) specs.Mount {
		opts := []string{"rbind", "rprivate"}
		if ro {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}
	}
	ro := in.Config.GetLinux().GetSecurityContext().GetReadonlyRootfs()
	for _, f := range []struct{ dst, src string }{
		{"/etc/hostname", in.Pod.Hostname}, {"/etc/hosts", in.Pod.Hosts}, {"/etc/resolv.conf", in.Pod.ResolvConf},
	} {
		if f.src != "" {
			mounts = append(mounts, in.Pod.idmapped(bind(f.dst, f.src, ro)))
		}
	}
	if in.Pod.Shm != "" {
		mounts = append(mounts, bind("/dev/shm", in.Pod.Shm, false))
	} else {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	for i, m := range in.Config.GetMounts() {
		dst := m.GetContainerPath()
		if dst == "" || !filepath.IsAbs(dst) {
			return nil, fmt.Errorf("mounts[%d].container_path %q must be an absolute path: %w", i, dst, errdefs.ErrInvalidArgument)
		}
		if m.GetImage() != nil {
			src, ok := in.ImageVolumes[i]
			if !ok {
				return nil, fmt.Errorf("mounts[%d]: image volume %q not mounted: %w", i, m.GetImage().GetImage(), errdefs.ErrInvalidArgument)
			}
			dst = filepath.Clean(dst)
			mounts = slices.DeleteFunc(mounts, func(x specs.Mount) bool { return x.Destination == dst })
			// Idmapped already, as the view's layers (see image.MountView).
			mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "ro"}})
			continue
		}
		if m.GetHostPath() == "" {
			return nil, fmt.Errorf("mounts[%d].host_path must not be empty: %w", i, errdefs.ErrInvalidArgument)
		}
		src, err := filepath.EvalSymlinks(m.GetHostPath())
		if err != nil {
			return nil, fmt.Errorf("mounts[%d].host_path %q: %v: %w", i, m.GetHostPath(), err, errdefs.ErrInvalidArgument)
		}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() {
				return nil, fmt.Errorf("mounts[%d]: recursive_read_only needs readonly: %w", i, errdefs.ErrInvalidArgument)
			}
			if p := m.GetPropagation(); p != runtime.MountPropagation_PROPAGATION_PRIVATE {
				return nil, fmt.Errorf("mounts[%d]: recursive_read_only needs private propagation, not %s: %w", i, p, errdefs.ErrInvalidArgument)
			}
			if !in.RecursiveReadOnly {
				return nil, fmt.Errorf("mounts[%d]: recursive_read_only: the runtime handler cannot make recursive read-only mounts: %w", i, errdefs.ErrInvalidArgument)
			}
		}
		if err := checkPropagation(src, m.GetPropagation()); err != nil {
			return nil, fmt.Errorf("mounts[%d].propagation: %w", i, err)
		}
		opts := []string{"rbind"}
		switch m.GetPropagation() {
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			opts = append(opts, "rshared")
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
		default:
			opts = append(opts, "rprivate")
		}
		switch {
		case m.GetRecursiveReadOnly():
			opts = append(opts, "ro", "rro")
		case m.GetReadonly():
			opts = append(opts, "ro")
		default:
			opts = append(opts, "rw")
		}
		mnt := in.Pod.idmapped(specs.Mount{Destination: filepath.Clean(dst), Type: "bind", Source: src, Options: opts})
		if len(m.GetUidMappings())+len(m.GetGidMappings()) > 0 {
			if in.Pod.UserNS == "" {
				return nil, fmt.Errorf("mounts[%d]: uid_mappings and gid_mappings need a pod in a user namespace: %w", i, errdefs.ErrInvalidArgument)
			}
			if len(m.GetUidMappings()) == 0 || len(m.GetGidMappings()) == 0 {
				return nil, fmt.Errorf("mounts[%d]: an idmapped mount needs both uid_mappings and gid_mappings: %w", i, errdefs.ErrInvalidArgument)
			}
			mnt.UIDMappings, mnt.GIDMappings = IDMaps(m.GetUidMappings()), IDMaps(m.GetGidMappings())
		}
		mounts = slices.DeleteFunc(mounts, func(x specs.Mount) bool { return x.Destination == mnt.Destination })
		mounts = append(mounts, mnt)
	}
	return mounts, nil
}

// idmapped makes a bind mount of a pod in a user namespace idmapped with
// the pod's mappings (as KEP-127 asks of runtimes): files owned by the
// host's root are the container's root's, not nobody's.
func (p Pod) idmapped(m specs.Mount) specs.Mount {
	if p.UserNS != "" {
		m.UIDMappings, m.GIDMappings = p.UIDs, p.GIDs
	}
	return m
}

// IDMaps is the OCI form of CRI ID mappings.
func IDMaps(maps []*runtime.IDMapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, len(maps))
	for i, m := range maps {
		out[i] = specs.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()}
	}
	return out
}
