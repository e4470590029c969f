package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Bits of FuzzBuild's host argument: what the host and the pod's sandbox
// offer, beside the two configs.
const (
	hostSELinux       = 1 << iota // the host runs SELinux
	hostAppArmor                  // the host has AppArmor, with docker-default and "mine" loaded
	hostRRO                       // the runtime handler can make rro mounts
	hostOOMFloor                  // the daemon cannot go below oom_score_adj -500
	hostSystemd                   // systemd cgroup driver
	hostUserNS                    // the pod is in its own user namespace (with its config's mappings)
	hostImageVolumes              // every image volume of the config is mounted
	hostNoSysResource             // the daemon lacks CAP_SYS_RESOURCE
)

// FuzzBuild decodes a ContainerConfig and a PodSandboxConfig from
// arbitrary protobuf bytes and builds the container's spec from them. Build
// must never panic; it may fail, but only with an error carrying an errdefs
// class (the interceptor would send anything else as Internal). A spec it
// returns has a command and one mount per destination, each absolute.
//
// Every host path the container config names (mounts, devices, a seccomp
// profile) is rebased into a fixture directory first, so that the fuzzer
// exercises Build's logic instead of walking the host's file system or
// reading /dev/zero.
func FuzzBuild(f *testing.F) {
	for _, s := range buildSeeds() {
		ctr, err := proto.Marshal(s.ctr)
		if err != nil {
			f.Fatal(err)
		}
		pod, err := proto.Marshal(s.pod)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ctr, pod, s.imageUser, s.host)
	}
	fx := newBuildFixture(f)
	f.Fuzz(func(t *testing.T, ctrBytes, podBytes []byte, imageUser string, host uint8) {
		cfg, pod := &runtime.ContainerConfig{}, &runtime.PodSandboxConfig{}
		if proto.Unmarshal(ctrBytes, cfg) != nil || proto.Unmarshal(podBytes, pod) != nil {
			return
		}
		fx.rebase(cfg)
		in := fx.input(cfg, pod, imageUser, host)
		s, err := Build(in)
		if err != nil {
			if errdefs.Resolve(err) == errdefs.ErrUnknown {
				t.Fatalf("Build: unclassified error %q (would reach the client as Internal)", err)
			}
			return
		}
		if len(s.Process.Args) == 0 {
			t.Error("spec without a command")
		}
		seen := map[string]bool{}
		for _, m := range s.Mounts {
			if !filepath.IsAbs(m.Destination) || filepath.Clean(m.Destination) != m.Destination {
				t.Errorf("mount destination %q is not a clean absolute path", m.Destination)
			}
			if seen[m.Destination] {
				t.Errorf("two mounts at %s", m.Destination)
			}
			seen[m.Destination] = true
		}
	})
}

// buildFixture is the host FuzzBuild's configs see: a root file system with
// users, and a directory their host paths are rebased into, holding a
// directory, a file, device symlinks and seccomp profiles.
type buildFixture struct {
	rootfs, host string
}

func newBuildFixture(tb testing.TB) buildFixture {
	tb.Helper()
	root := tb.TempDir()
	fx := buildFixture{rootfs: filepath.Join(root, "rootfs"), host: filepath.Join(root, "host")}
	files := map[string]string{
		"rootfs/etc/passwd":         "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/:/bin/false\nu:x:1000:1000::/:/bin/sh\nbad:x:notanumber:0::/:/bin/sh\n",
		"rootfs/etc/group":          "root:x:0:\nwww-data:x:33:\nu:x:1000:\nextra:x:50000:u,www-data\n",
		"host/data/file":            "data",
		"host/seccomp.json":         `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`,
		"host/not-seccomp.json":     "[",
		"host/image/etc/os-release": "image volume",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	// Device nodes cannot be made without privileges; symlinks to the
	// host's harmless ones are followed like devices.
	if err := os.MkdirAll(filepath.Join(fx.host, "dev"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for link, target := range map[string]string{
		"dev/null": "/dev/null", "dev/zero": "/dev/zero", "link": "data", "dangling": "missing",
	} {
		if err := os.Symlink(target, filepath.Join(fx.host, link)); err != nil {
			tb.Fatal(err)
		}
	}
	return fx
}

// hostPath maps a path of the fuzzed config into the fixture's host
// directory; a path that climbs with ".." stops at its top.
func (fx buildFixture) hostPath(p string) string {
	if p == "" {
		return ""
	}
	return filepath.Join(fx.host, filepath.Clean("/"+p))
}

// rebase moves every host path of cfg into the fixture. Relative paths are
// rebased too: Build would resolve them against the working directory.
func (fx buildFixture) rebase(cfg *runtime.ContainerConfig) {
	for _, m := range cfg.GetMounts() {
		m.HostPath = fx.hostPath(m.GetHostPath())
	}
	for _, d := range cfg.GetDevices() {
		d.HostPath = fx.hostPath(d.GetHostPath())
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if p := sc.GetSeccomp(); p != nil && filepath.IsAbs(p.GetLocalhostRef()) {
		p.LocalhostRef = fx.hostPath(p.GetLocalhostRef())
	}
	if ref, ok := strings.CutPrefix(sc.GetSeccompProfilePath(), "localhost/"); ok && filepath.IsAbs(ref) {
		sc.SeccompProfilePath = "localhost/" + fx.hostPath(ref)
	}
}

// input assembles Build's input as the CRI service does, the pod's
// namespaces and files at fixed paths.
func (fx buildFixture) input(cfg *runtime.ContainerConfig, pod *runtime.PodSandboxConfig, imageUser string, host uint8) Input {
	in := Input{
		ID:     "c1",
		Config: cfg,
		Image: imagespec.Image{Config: imagespec.ImageConfig{
			User: imageUser, Entrypoint: []string{"/entrypoint"}, Cmd: []string{"run"},
			Env: []string{"PATH=/bin", "HOME=/"}, WorkingDir: "/work",
		}},
		Pod: Pod{ID: "p1", Config: pod, NetNS: "/ns/net", IPCNS: "/ns/ipc", UTSNS: "/ns/uts", PIDNS: "/proc/42/ns/pid",
			Hostname: "/pod/hostname", Hosts: "/pod/hosts", ResolvConf: "/pod/resolv.conf", Shm: "/pod/shm",
			CgroupParent: pod.GetLinux().GetCgroupParent()},
		Rootfs:            fx.rootfs,
		CgroupDriver:      "cgroupfs",
		SELinux:           host&hostSELinux != 0,
		RecursiveReadOnly: host&hostRRO != 0,
	}
	if host&hostAppArmor != 0 {
		in.AppArmorProfiles = map[string]bool{"docker-default": true, "mine": true}
	}
	if host&hostOOMFloor != 0 {
		floor := -500
		in.OOMScoreAdjFloor = &floor
	}
	if host&hostSystemd != 0 {
		in.CgroupDriver = "systemd"
	}
	if host&hostUserNS != 0 {
		userns := pod.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
		in.Pod.UserNS, in.Pod.UIDs, in.Pod.GIDs = "/ns/user", IDMaps(userns.GetUids()), IDMaps(userns.GetGids())
	}
	if host&hostImageVolumes != 0 {
		in.ImageVolumes = map[int]string{}
		for i, m := range cfg.GetMounts() {
			if m.GetImage() != nil {
				in.ImageVolumes[i] = filepath.Join(fx.host, "image")
			}
		}
	}
	if host&hostNoSysResource != 0 {
		in.CapabilityBounding = uint64(1<<41-1) &^ (1 << 24)
	}
	return in
}

type buildSeed struct {
	ctr       *runtime.ContainerConfig
	pod       *runtime.PodSandboxConfig
	imageUser string
	host      uint8
}

// buildSeeds are configs that reach each part of Build: mounts, devices,
// the security context, resources, sysctls and annotations, valid and not.
func buildSeeds() []buildSeed {
	i64 := func(v int64) *runtime.Int64Value { return &runtime.Int64Value{Value: v} }
	meta := &runtime.ContainerMetadata{Name: "c", Attempt: 1}
	podMeta := &runtime.PodSandboxMetadata{Name: "p", Uid: "u", Namespace: "default"}
	maps := []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
	usernsPod := &runtime.PodSandboxConfig{Metadata: podMeta, Linux: &runtime.LinuxPodSandboxConfig{
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
			UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: maps, Gids: maps},
		}},
	}}
	sysctlPod := &runtime.PodSandboxConfig{
		Metadata:    podMeta,
		Annotations: map[string]string{"kubernetes.io/ingress-bandwidth": "10M", "a": "b"},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/pod1",
			Sysctls:      map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1024", "fs.mqueue.msg_max": "9"},
		},
	}
	withSC := func(sc *runtime.LinuxContainerSecurityContext) *runtime.ContainerConfig {
		return &runtime.ContainerConfig{Metadata: meta, Linux: &runtime.LinuxContainerConfig{SecurityContext: sc}}
	}
	profile := func(t runtime.SecurityProfile_ProfileType, ref string) *runtime.SecurityProfile {
		return &runtime.SecurityProfile{ProfileType: t, LocalhostRef: ref}
	}
	return []buildSeed{
		{ctr: &runtime.ContainerConfig{}, pod: &runtime.PodSandboxConfig{}},
		{
			ctr: &runtime.ContainerConfig{
				Metadata: meta, Image: &runtime.ImageSpec{Image: "busybox"},
				Command: []string{"sh", "-c"}, Args: []string{"echo hi"}, WorkingDir: "/tmp",
				Envs:        []*runtime.KeyValue{{Key: "PATH", Value: []byte("/usr/bin")}, {Key: "A", Value: []byte("1")}},
				Annotations: map[string]string{"io.kubernetes.cri.container-type": "sandbox", "x": "y"},
				Labels:      map[string]string{"app": "a"}, Tty: true, Stdin: true, StdinOnce: true,
				LogPath: "c/0.log",
				Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
					CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 28,
					MemorySwapLimitInBytes: 1 << 29, OomScoreAdj: -999, CpusetCpus: "0-1", CpusetMems: "0",
					HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
					Unified:        map[string]string{"memory.high": "100000000"},
				}},
			},
			pod: sysctlPod, host: hostOOMFloor | hostSystemd,
		},
		{
			ctr: &runtime.ContainerConfig{Metadata: meta, Mounts: []*runtime.Mount{
				{ContainerPath: "/data", HostPath: "/data", Readonly: true},
				{ContainerPath: "/rro", HostPath: "/data", Readonly: true, RecursiveReadOnly: true},
				{ContainerPath: "/file", HostPath: "/data/file", SelinuxRelabel: true},
				{ContainerPath: "/etc/hosts", HostPath: "/link"},
				{ContainerPath: "/img", Image: &runtime.ImageSpec{Image: "busybox"}},
				{ContainerPath: "/own/", HostPath: "/data", UidMappings: maps, GidMappings: maps},
				{ContainerPath: "/private", HostPath: "/data", Propagation: runtime.MountPropagation_PROPAGATION_PRIVATE},
			}},
			pod: usernsPod, host: hostRRO | hostImageVolumes | hostUserNS,
		},
		{
			ctr: &runtime.ContainerConfig{Metadata: meta, Mounts: []*runtime.Mount{
				{ContainerPath: "/slave", HostPath: "/data", Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
				{ContainerPath: "/shared", HostPath: "/data", Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
			}},
			pod: &runtime.PodSandboxConfig{},
		},
		{
			ctr: &runtime.ContainerConfig{Metadata: meta, Mounts: []*runtime.Mount{
				{ContainerPath: "/img", Image: &runtime.ImageSpec{Image: "busybox"}},
				{ContainerPath: "/own", HostPath: "/data", UidMappings: maps},
			}},
			pod: &runtime.PodSandboxConfig{}, host: hostUserNS,
		},
		{
			ctr: &runtime.ContainerConfig{Metadata: meta, Mounts: []*runtime.Mount{
				{ContainerPath: "relative", HostPath: "/data"},
				{ContainerPath: "/x", HostPath: "/dangling"},
				{ContainerPath: "/y", HostPath: "../../../etc"},
				{ContainerPath: "/rro", HostPath: "/data", RecursiveReadOnly: true},
			}},
			pod: &runtime.PodSandboxConfig{},
		},
		{
			ctr: &runtime.ContainerConfig{Metadata: meta, Devices: []*runtime.Device{
				{ContainerPath: "/dev/xnull", HostPath: "/dev/null", Permissions: "rw"},
				{ContainerPath: "/dev/all", HostPath: "/dev"},
			}},
			pod: &runtime.PodSandboxConfig{},
		},
		{
			ctr: &runtime.ContainerConfig{Metadata: meta, Devices: []*runtime.Device{
				{ContainerPath: "/dev/bad", HostPath: "/dev/zero", Permissions: "rwx"},
				{ContainerPath: "dev/rel", HostPath: "/data/file"},
			}},
			pod: &runtime.PodSandboxConfig{},
		},
		{
			ctr: &runtime.ContainerConfig{
				Metadata: meta, CDIDevices: []*runtime.CDIDevice{{Name: "vendor.com/gpu=0"}},
				Devices: []*runtime.Device{{ContainerPath: "/dev/file", HostPath: "/data/file"}},
			},
			pod: &runtime.PodSandboxConfig{},
		},
		{
			ctr: withSC(&runtime.LinuxContainerSecurityContext{
				Capabilities: &runtime.Capability{
					AddCapabilities: []string{"SYS_ADMIN", "cap_net_admin", "ALL"}, DropCapabilities: []string{"CAP_CHOWN", "all"},
					AddAmbientCapabilities: []string{"NET_BIND_SERVICE"},
				},
				RunAsUser: i64(1000), RunAsGroup: i64(1000), SupplementalGroups: []int64{7, 50000},
				SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Strict,
				ReadonlyRootfs:           true, NoNewPrivs: true,
				MaskedPaths: []string{"/proc/x"}, ReadonlyPaths: []string{},
				NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: "t", Ipc: runtime.NamespaceMode_NODE},
				Seccomp:          profile(runtime.SecurityProfile_RuntimeDefault, ""),
				Apparmor:         profile(runtime.SecurityProfile_RuntimeDefault, ""),
				SelinuxOptions:   &runtime.SELinuxOption{User: "system_u", Role: "system_r", Type: "container_t", Level: "s0:c1,c2"},
			}),
			pod: &runtime.PodSandboxConfig{}, host: hostAppArmor | hostNoSysResource,
		},
		{
			ctr: withSC(&runtime.LinuxContainerSecurityContext{
				Privileged:       true,
				RunAsUsername:    "www-data",
				Apparmor:         profile(runtime.SecurityProfile_Unconfined, ""),
				NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE, Network: runtime.NamespaceMode_NODE},
			}),
			pod: &runtime.PodSandboxConfig{}, host: hostAppArmor,
		},
		{
			ctr: withSC(&runtime.LinuxContainerSecurityContext{
				Seccomp:  profile(runtime.SecurityProfile_Localhost, "/seccomp.json"),
				Apparmor: profile(runtime.SecurityProfile_Localhost, "mine"),
			}),
			pod: &runtime.PodSandboxConfig{}, host: hostAppArmor,
		},
		{
			ctr: withSC(&runtime.LinuxContainerSecurityContext{SelinuxOptions: &runtime.SELinuxOption{Level: "s0"}}),
			pod: &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
				SelinuxOptions: &runtime.SELinuxOption{Type: "spc_t"},
			}}},
			host: hostSELinux,
		},
		{
			ctr: withSC(&runtime.LinuxContainerSecurityContext{
				Seccomp: profile(runtime.SecurityProfile_Localhost, "/not-seccomp.json"),
			}),
			pod: &runtime.PodSandboxConfig{}, imageUser: "u:extra",
		},
		{
			ctr: withSC(&runtime.LinuxContainerSecurityContext{
				SeccompProfilePath: "localhost//seccomp.json", ApparmorProfile: "localhost/mine",
			}),
			pod: &runtime.PodSandboxConfig{}, imageUser: "www-data:extra", host: hostAppArmor,
		},
		{
			ctr: withSC(&runtime.LinuxContainerSecurityContext{
				SeccompProfilePath: "localhost/seccomp.json", ApparmorProfile: "localhost/other",
				RunAsGroup: i64(5), Capabilities: &runtime.Capability{AddCapabilities: []string{"BOGUS"}},
			}),
			pod: &runtime.PodSandboxConfig{}, imageUser: "nobody:nogroup", host: hostAppArmor,
		},
		{
			ctr: withSC(&runtime.LinuxContainerSecurityContext{
				SeccompProfilePath: "runtime/default", ApparmorProfile: "runtime/default",
				Capabilities: &runtime.Capability{AddCapabilities: []string{"SYS_RESOURCE"}, AddAmbientCapabilities: []string{"ALL"}},
			}),
			pod: &runtime.PodSandboxConfig{}, imageUser: "1000:33", host: hostNoSysResource | hostAppArmor,
		},
	}
}

// The fixture keeps FuzzBuild's paths inside it: a path that climbs with
// ".." stays in the fixture's host directory.
func TestBuildFixtureRebase(t *testing.T) {
	fx := buildFixture{host: "/fx"}
	for in, want := range map[string]string{"": "", "/dev": "/fx/dev", "../../..": "/fx", "a/../../b": "/fx/b", "/..//x": "/fx/x"} {
		if got := fx.hostPath(in); got != want {
			t.Errorf("hostPath(%q) = %q, want %q", in, got, want)
		}
	}
}
