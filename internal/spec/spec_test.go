package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCommandRules(t *testing.T) {
	img := imagespec.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"c1", "c2"}}
	for _, tc := range []struct {
		name      string
		cmd, args []string
		want      []string
	}{
		{"image defaults", nil, nil, []string{"/ep", "c1", "c2"}},
		{"args replace cmd", nil, []string{"a"}, []string{"/ep", "a"}},
		{"command replaces entrypoint and drops cmd", []string{"/bin/x"}, nil, []string{"/bin/x"}},
		{"command and args", []string{"/bin/x"}, []string{"a"}, []string{"/bin/x", "a"}},
	} {
		got, err := command(&runtime.ContainerConfig{Command: tc.cmd, Args: tc.args}, img)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := command(&runtime.ContainerConfig{}, imagespec.ImageConfig{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no command anywhere: err = %v", err)
	}
}

func TestEnvironment(t *testing.T) {
	got := environment([]string{"PATH=/bin", "A=1"}, []*runtime.KeyValue{{Key: "A", Value: []byte("2")}, {Key: "B", Value: []byte("3")}})
	if strings.Join(got, " ") != "PATH=/bin A=2 B=3" {
		t.Errorf("env = %v", got)
	}
}

func rootfsWithUsers(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/:/bin/false\nu:x:1000:1000::/:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nwww-data:x:33:\nu:x:1000:\nextra:x:50000:u,www-data\n"), 0o644)
	return root
}

func TestResolveUser(t *testing.T) {
	root := rootfsWithUsers(t)
	i64 := func(v int64) *runtime.Int64Value { return &runtime.Int64Value{Value: v} }
	for _, tc := range []struct {
		name      string
		sc        *runtime.LinuxContainerSecurityContext
		imageUser string
		want      specs.User
	}{
		{"default root", nil, "", specs.User{AdditionalGids: []uint32{0}}},
		{"image uid", nil, "1000", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 50000}}},
		{"image name", nil, "www-data", specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{33, 50000}}},
		{"image uid:gid", nil, "1003:1004", specs.User{UID: 1003, GID: 1004, AdditionalGids: []uint32{1004}}},
		{"image name:gid", nil, "www-data:1004", specs.User{UID: 33, GID: 1004, AdditionalGids: []uint32{1004, 50000}}},
		{"run_as_user wins", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(1000)}, "www-data",
			specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 50000}}},
		{"strict policy: only the named groups", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234}, SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Strict},
			"", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 1234}}},
		{"merge policy: the image's groups too", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234}},
			"", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 50000, 1234}}},
		{"run_as_group", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(7), RunAsGroup: i64(8), SupplementalGroups: []int64{9}},
			"", specs.User{UID: 7, GID: 8, AdditionalGids: []uint32{8, 9}}},
		{"run_as_username", &runtime.LinuxContainerSecurityContext{RunAsUsername: "www-data"}, "",
			specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{33, 50000}}},
	} {
		got, err := resolveUser(root, tc.sc, tc.imageUser)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got.UID != tc.want.UID || got.GID != tc.want.GID || !slices.Equal(got.AdditionalGids, tc.want.AdditionalGids) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if _, err := resolveUser(root, &runtime.LinuxContainerSecurityContext{RunAsGroup: i64(1)}, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("run_as_group alone: err = %v", err)
	}
	if _, err := resolveUser(root, &runtime.LinuxContainerSecurityContext{RunAsUsername: "nobody-here"}, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown run_as_username: err = %v", err)
	}
}

func TestPasswdSymlinkStaysInRootfs(t *testing.T) {
	root, host := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	hostPasswd := filepath.Join(host, "passwd")
	os.WriteFile(hostPasswd, []byte("root:x:0:0::/:/bin/sh\n"), 0o644)
	// An image pointing /etc/passwd at a host path must read that path
	// inside its own root file system, where it does not exist.
	os.Symlink(hostPasswd, filepath.Join(root, "etc/passwd"))
	if _, _, err := (userDB{rootfs: root}).parseImageUser("root"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("err = %v: the host's /etc/passwd was read through the image's symlink", err)
	}
}

func TestCapabilities(t *testing.T) {
	sc := &runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{
		AddCapabilities: []string{"SYS_ADMIN"}, DropCapabilities: []string{"CAP_CHOWN"},
	}}
	c, err := capabilities(sc, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c.Effective, "CAP_SYS_ADMIN") || slices.Contains(c.Effective, "CAP_CHOWN") {
		t.Errorf("caps = %v", c.Effective)
	}
	c, _ = capabilities(&runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_RAW"}}}, 0)
	if !slices.Equal(c.Effective, []string{"CAP_NET_RAW"}) {
		t.Errorf("drop ALL add NET_RAW = %v", c.Effective)
	}
	if _, err := capabilities(&runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{AddCapabilities: []string{"BOGUS"}}}, 0); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown capability: err = %v", err)
	}
}

func TestCapabilitiesLimitedToBoundingSet(t *testing.T) {
	bounding := uint64(1<<41-1) &^ (1 << 24) // everything but CAP_SYS_RESOURCE
	c, err := capabilities(&runtime.LinuxContainerSecurityContext{Privileged: true}, bounding)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(c.Bounding, "CAP_SYS_RESOURCE") || !slices.Contains(c.Bounding, "CAP_SYS_ADMIN") || len(c.Bounding) != 40 {
		t.Errorf("privileged caps = %v", c.Bounding)
	}
	_, err = capabilities(&runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{AddCapabilities: []string{"SYS_RESOURCE"}}}, bounding)
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("adding a capability the daemon lacks: err = %v", err)
	}
}

func TestCgroupsPath(t *testing.T) {
	if got := cgroupsPath("cgroupfs", "/kubepods/pod1", "c"); got != "/kubepods/pod1/c" {
		t.Errorf("cgroupfs = %q", got)
	}
	if got := cgroupsPath("cgroupfs", "", "c"); got != "/berth/c" {
		t.Errorf("cgroupfs default = %q", got)
	}
	if got := cgroupsPath("systemd", "kubepods.slice", "c"); got != "kubepods.slice:berth:c" {
		t.Errorf("systemd = %q", got)
	}
}

func TestBuildMountsAndNamespaces(t *testing.T) {
	root := rootfsWithUsers(t)
	host := t.TempDir()
	in := Input{
		ID: "c1",
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "c"},
			Command:  []string{"sh"},
			Mounts: []*runtime.Mount{
				{ContainerPath: "/data", HostPath: host, Readonly: true},
				{ContainerPath: "/etc/hosts", HostPath: host},
			},
			Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{OomScoreAdj: -998}},
		},
		Pod: Pod{ID: "p1", Config: &runtime.PodSandboxConfig{}, NetNS: "/ns/net", IPCNS: "/ns/ipc", UTSNS: "/ns/uts",
			Hosts: "/pod/hosts", Hostname: "/pod/hostname", ResolvConf: "/pod/resolv.conf", Shm: "/pod/shm"},
		Rootfs:       root,
		CgroupDriver: "cgroupfs",
	}
	s, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	byDst := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		if _, dup := byDst[m.Destination]; dup {
			t.Errorf("two mounts at %s", m.Destination)
		}
		byDst[m.Destination] = m
	}
	if m := byDst["/data"]; !slices.Contains(m.Options, "ro") || m.Source != host {
		t.Errorf("/data = %+v", m)
	}
	if m := byDst["/etc/hosts"]; m.Source != host {
		t.Errorf("a CRI mount must replace the pod's /etc/hosts: %+v", m)
	}
	if m := byDst["/dev/shm"]; m.Source != "/pod/shm" {
		t.Errorf("/dev/shm = %+v", m)
	}
	paths := map[specs.LinuxNamespaceType]string{}
	for _, ns := range s.Linux.Namespaces {
		paths[ns.Type] = ns.Path
	}
	if paths[specs.NetworkNamespace] != "/ns/net" || paths[specs.UTSNamespace] != "/ns/uts" || paths[specs.PIDNamespace] != "" {
		t.Errorf("namespaces = %+v", s.Linux.Namespaces)
	}
	if s.Hostname != "" {
		t.Error("hostname set in the spec: runc would rename the whole pod's UTS namespace")
	}
	if *s.Process.OOMScoreAdj != -998 {
		t.Errorf("oom_score_adj = %d", *s.Process.OOMScoreAdj)
	}
	floor := -500
	in.OOMScoreAdjFloor = &floor
	s, _ = Build(in)
	if *s.Process.OOMScoreAdj != -500 {
		t.Errorf("oom_score_adj not clamped to the daemon's own: %d", *s.Process.OOMScoreAdj)
	}

	in.Config.Mounts = []*runtime.Mount{{ContainerPath: "relative", HostPath: host}}
	if _, err := Build(in); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "mounts[0].container_path") {
		t.Errorf("relative container path: err = %v", err)
	}
	in.Config.Mounts = []*runtime.Mount{{ContainerPath: "/x", HostPath: filepath.Join(host, "missing")}}
	if _, err := Build(in); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "mounts[0].host_path") {
		t.Errorf("missing host path: err = %v", err)
	}
}

func TestAppArmor(t *testing.T) {
	localhost := &runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "mine"}}
	deprecated := &runtime.LinuxContainerSecurityContext{ApparmorProfile: "localhost/mine"}
	runtimeDefault := &runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}}
	for _, tc := range []struct {
		name    string
		sc      *runtime.LinuxContainerSecurityContext
		loaded  map[string]bool
		want    string
		wantErr bool
	}{
		{"nothing asked", nil, map[string]bool{"docker-default": true}, "", false},
		{"runtime default without AppArmor", runtimeDefault, nil, "", false},
		{"runtime default", runtimeDefault, map[string]bool{"docker-default": true}, "docker-default", false},
		{"runtime default, none loaded", runtimeDefault, map[string]bool{}, "", true},
		{"localhost", localhost, map[string]bool{"mine": true}, "mine", false},
		{"deprecated localhost", deprecated, map[string]bool{"mine": true}, "mine", false},
		{"localhost not loaded", localhost, map[string]bool{}, "", true},
		{"localhost without AppArmor", localhost, nil, "", true},
	} {
		s := &specs.Spec{Process: &specs.Process{}}
		err := applyAppArmor(s, tc.sc, tc.loaded)
		if (err != nil) != tc.wantErr || s.Process.ApparmorProfile != tc.want || (err != nil && !errdefs.IsFailedPrecondition(err)) {
			t.Errorf("%s: profile %q, %v; want %q (error %v)", tc.name, s.Process.ApparmorProfile, err, tc.want, tc.wantErr)
		}
	}
}

func TestCheckSELinux(t *testing.T) {
	level := &runtime.SELinuxOption{Level: "s0:c1,c2"}
	if err := CheckSELinux("f", level, false); err != nil {
		t.Errorf("options on a host without SELinux: %v, want them ignored", err)
	}
	if err := CheckSELinux("f", &runtime.SELinuxOption{}, true); err != nil {
		t.Errorf("empty options on an SELinux host: %v", err)
	}
	if err := CheckSELinux("linux.security_context.selinux_options", level, true); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "selinux_options") {
		t.Errorf("a label on an SELinux host: %v, want FailedPrecondition naming the field", err)
	}
}

func TestAmbientCapabilities(t *testing.T) {
	c, err := capabilities(&runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{
		DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"net_bind_service", "CAP_NET_BIND_SERVICE"},
	}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CAP_NET_BIND_SERVICE"}
	for name, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "inheritable": c.Inheritable, "ambient": c.Ambient} {
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if _, err := capabilities(&runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{AddAmbientCapabilities: []string{"ALL"}}}, 0); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ambient ALL: %v, want InvalidArgument", err)
	}
}

// TestBuildInUserNamespace: a container of a pod in a user namespace joins
// it, its binds are idmapped with the pod's mappings unless a mount brings
// its own, and a TARGET container joins the PID namespace it is given.
func TestBuildInUserNamespace(t *testing.T) {
	root := rootfsWithUsers(t)
	host := t.TempDir()
	podMaps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	own := []*runtime.IDMapping{{ContainerId: 0, HostId: 300000, Length: 10}}
	in := Input{
		ID: "c1",
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "c"},
			Command:  []string{"sh"},
			Mounts: []*runtime.Mount{
				{ContainerPath: "/data", HostPath: host},
				{ContainerPath: "/own", HostPath: host, UidMappings: own, GidMappings: own},
			},
			Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
				NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: "t"},
			}},
		},
		Pod: Pod{ID: "p1", Config: &runtime.PodSandboxConfig{}, NetNS: "/ns/net", UserNS: "/ns/user", UIDs: podMaps, GIDs: podMaps,
			PIDNS: "/proc/42/ns/pid", Hosts: "/pod/hosts", Shm: "/pod/shm"},
		Rootfs:       root,
		CgroupDriver: "cgroupfs",
	}
	s, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[specs.LinuxNamespaceType]string{}
	for _, ns := range s.Linux.Namespaces {
		paths[ns.Type] = ns.Path
	}
	if paths[specs.UserNamespace] != "/ns/user" || paths[specs.PIDNamespace] != "/proc/42/ns/pid" {
		t.Errorf("namespaces = %+v, want the pod's user namespace and the target's PID namespace", s.Linux.Namespaces)
	}
	if s.Linux.UIDMappings != nil {
		t.Error("spec carries mappings besides the user namespace path (the runtime reads them from it)")
	}
	byDst := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		byDst[m.Destination] = m
	}
	for dst, want := range map[string][]specs.LinuxIDMapping{
		"/data": podMaps, "/etc/hosts": podMaps,
		"/own":     {{ContainerID: 0, HostID: 300000, Size: 10}},
		"/dev/shm": nil, // tmpfs, mode 1777: nothing to map
	} {
		if m := byDst[dst]; !slices.Equal(m.UIDMappings, want) || !slices.Equal(m.GIDMappings, want) {
			t.Errorf("%s mappings = %v / %v, want %v", dst, m.UIDMappings, m.GIDMappings, want)
		}
	}

	// Outside a user namespace: no idmapping, and a mount's own mappings
	// are refused.
	in.Pod.UserNS, in.Pod.UIDs, in.Pod.GIDs = "", nil, nil
	if _, err := Build(in); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "mounts[1]") {
		t.Errorf("idmapped mount outside a user namespace: %v, want InvalidArgument naming mounts[1]", err)
	}
	in.Config.Mounts = in.Config.Mounts[:1]
	s, err = Build(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Mounts {
		if m.UIDMappings != nil || m.GIDMappings != nil {
			t.Errorf("%s idmapped outside a user namespace", m.Destination)
		}
	}
}

// A device host_path that is a directory outside /dev is refused: the
// daemon would walk the host's file system for device nodes.
func TestDeviceDirectoryOutsideDev(t *testing.T) {
	_, _, err := devices(&runtime.ContainerConfig{Devices: []*runtime.Device{{HostPath: t.TempDir(), ContainerPath: "/dev/x", Permissions: "rw"}}}, false)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "outside /dev") {
		t.Fatalf("directory outside /dev: %v", err)
	}
}
