package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// createWith creates (not starts) a busybox container in pod with mounts
// and a security context, returning its ID or the error.
func (p *podEnv) createWith(t *testing.T, pod string, podCfg *runtime.PodSandboxConfig, name string, mounts []*runtime.Mount, sc *runtime.LinuxContainerSecurityContext, cmd ...string) (string, error) {
	t.Helper()
	resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: name},
			Image:    &runtime.ImageSpec{Image: busyboxImage},
			Command:  cmd,
			Mounts:   mounts,
			Linux:    &runtime.LinuxContainerConfig{SecurityContext: sc},
		},
	})
	return resp.GetContainerId(), err
}

// exec runs cmd in the container and returns its combined output and exit
// code.
func (p *podEnv) exec(t *testing.T, ctr string, cmd ...string) (string, int32) {
	t.Helper()
	resp, err := p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: ctr, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("ExecSync %v: %v", cmd, err)
	}
	return string(resp.Stdout) + string(resp.Stderr), resp.ExitCode
}

// hostDirWithSubmount is a host directory holding a tmpfs mounted at sub/.
func hostDirWithSubmount(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	return dir
}

// TestRecursiveReadOnlyMounts: a readonly volume leaves the mounts under
// it writable unless it is recursive_read_only, which makes them read-only
// too; recursive_read_only without readonly, or with propagation, is
// refused.
func TestRecursiveReadOnlyMounts(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "rro")
	host := hostDirWithSubmount(t)

	plain, err := p.createWith(t, pod, podCfg, "plain-ro", []*runtime.Mount{{HostPath: host, ContainerPath: "/vol", Readonly: true}}, nil, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, plain)
	if out, code := p.exec(t, plain, "touch", "/vol/sub/file"); code != 0 {
		t.Errorf("a plain readonly volume made its submount read-only too: %s", out)
	}
	if out, code := p.exec(t, plain, "touch", "/vol/file"); code == 0 || !strings.Contains(out, "Read-only file system") {
		t.Errorf("touch on a readonly volume: exit %d, %s", code, out)
	}

	rro, err := p.createWith(t, pod, podCfg, "rro", []*runtime.Mount{{HostPath: host, ContainerPath: "/vol", Readonly: true, RecursiveReadOnly: true}}, nil, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, rro)
	if out, code := p.exec(t, rro, "touch", "/vol/sub/other"); code == 0 || !strings.Contains(out, "Read-only file system") {
		t.Errorf("touch under a recursive read-only volume: exit %d, %s", code, out)
	}

	for name, m := range map[string]*runtime.Mount{
		"rro-without-readonly": {HostPath: host, ContainerPath: "/vol", RecursiveReadOnly: true},
		"rro-with-propagation": {HostPath: host, ContainerPath: "/vol", Readonly: true, RecursiveReadOnly: true, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
	} {
		if _, err := p.createWith(t, pod, podCfg, name, []*runtime.Mount{m}, nil, "true"); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "recursive_read_only") {
			t.Errorf("%s: %v, want InvalidArgument naming recursive_read_only", name, err)
		}
	}
}

// TestMountPropagation: a bidirectional volume carries mounts made in the
// container back to the host and host mounts in; its source must be on a
// shared mount, else CreateContainer says so.
func TestMountPropagation(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "propagation")
	host := t.TempDir()
	if err := unix.Mount(host, host, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(host, unix.MNT_DETACH) })
	if err := unix.Mount("", host, "", unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	vol := []*runtime.Mount{{HostPath: host, ContainerPath: "/vol", Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
	privileged := &runtime.LinuxContainerSecurityContext{Privileged: true}
	if _, err := p.createWith(t, pod, podCfg, "on-private", vol, privileged, "sleep", "1000"); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not shared") {
		t.Fatalf("bidirectional volume on a private mount: %v, want FailedPrecondition", err)
	}

	if err := unix.Mount("", host, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	ctr, err := p.createWith(t, pod, podCfg, "on-shared", vol, privileged, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, ctr)
	if out, code := p.exec(t, ctr, "sh", "-c", "mkdir -p /vol/from-ctr && mount -t tmpfs tmpfs /vol/from-ctr && touch /vol/from-ctr/made-in-container"); code != 0 {
		t.Fatalf("mount in the container: %s", out)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(host, "from-ctr"), unix.MNT_DETACH) })
	if _, err := os.Stat(filepath.Join(host, "from-ctr", "made-in-container")); err != nil {
		t.Errorf("the container's mount did not reach the host: %v", err)
	}
	fromHost := filepath.Join(host, "from-host")
	if err := os.Mkdir(fromHost, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", fromHost, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(fromHost, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(fromHost, "made-on-host"), nil, 0o644)
	if out, code := p.exec(t, ctr, "ls", "/vol/from-host"); code != 0 || !strings.Contains(out, "made-on-host") {
		t.Errorf("the host's mount did not reach the container: %s", out)
	}
}

// TestRuntimeHandlers: Status lists the default handler ("") and each
// configured one with its features; a pod picks one by name and its
// containers run on that runtime; an unknown name is refused.
func TestRuntimeHandlers(t *testing.T) {
	// debian-runc: Debian's runc with no userns_path, as a host without a
	// current runc has it.
	p := newPodEnvWith(t, "[runtime.handlers.debian-runc]\npath = \"runc\"\n")
	st, err := p.runtime.Status(t.Context(), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, userns := map[string]bool{}, map[string]bool{}
	for _, h := range st.RuntimeHandlers {
		got[h.Name] = h.GetFeatures().GetRecursiveReadOnlyMounts()
		userns[h.Name] = h.GetFeatures().GetUserNamespaces()
	}
	for _, name := range []string{"", "runc", "crun", "runc-upstream", "debian-runc"} {
		if rro, ok := got[name]; !ok || !rro {
			t.Errorf("Status runtime_handlers: %q listed %v with recursive read-only mounts %v (all: %v)", name, ok, rro, got)
		}
	}
	// Debian's runc 1.1.5 makes no idmapped mounts; crun 1.8 and the runc
	// built from source do, and the runc handler runs the latter (its
	// userns_path) because Debian's cannot.
	wantUserns := map[string]bool{"runc": true, "crun": true, "runc-upstream": true, "debian-runc": false}
	wantUserns[""] = wantUserns[e2eenv.DefaultHandler()]
	if !maps.Equal(userns, wantUserns) {
		t.Errorf("Status runtime_handlers user_namespaces = %v, want %v", userns, wantUserns)
	}

	for _, handler := range []string{"runc", "crun"} {
		cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "on-" + handler, Namespace: "e2e", Uid: "on-" + handler}, LogDirectory: t.TempDir()}
		pod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
		if err != nil {
			t.Fatalf("RunPodSandbox on %s: %v", handler, err)
		}
		ps, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
		if err != nil || ps.Status.RuntimeHandler != handler {
			t.Fatalf("PodSandboxStatus runtime_handler = %q, %v", ps.GetStatus().GetRuntimeHandler(), err)
		}
		ctr := p.createContainer(t, pod.PodSandboxId, cfg, "c", "sleep", "1000")
		p.start(t, ctr)
		// Each runtime keeps its containers' state in its own root.
		if _, err := os.Stat(filepath.Join(p.daemon.State, "runtimes", handler, ctr)); err != nil {
			t.Errorf("container of a %s pod not in %s's state: %v", handler, handler, err)
		}
		if out, code := p.exec(t, ctr, "echo", "hello-from-"+handler); code != 0 || !strings.Contains(out, "hello-from-"+handler) {
			t.Errorf("exec on %s: %d %s", handler, code, out)
		}
	}

	cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "on-kata", Namespace: "e2e", Uid: "on-kata"}}
	_, err = p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "kata"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"kata"`) {
		t.Fatalf("RunPodSandbox with an unknown handler: %v, want InvalidArgument naming it", err)
	}

	if !strings.Contains(p.daemon.Log(), `handler runs its userns_path runtime`) {
		t.Error("the daemon did not log that the runc handler runs its userns_path runtime")
	}

	// User namespaces: Debian's runc cannot make idmapped mounts, so a pod
	// user namespace on a handler with only that runc is refused as such,
	// not run without one (TestUserNamespaces runs them on the others).
	mapping := []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
	for mode, want := range map[runtime.NamespaceMode]codes.Code{
		runtime.NamespaceMode_POD:       codes.FailedPrecondition,
		runtime.NamespaceMode_CONTAINER: codes.InvalidArgument,
	} {
		cfg := &runtime.PodSandboxConfig{
			Metadata: &runtime.PodSandboxMetadata{Name: "userns", Namespace: "e2e", Uid: "userns"},
			Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
				UsernsOptions: &runtime.UserNamespace{Mode: mode, Uids: mapping, Gids: mapping},
			}}},
		}
		_, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "debian-runc"})
		if status.Code(err) != want || !strings.Contains(err.Error(), "userns_options") {
			t.Errorf("pod in a user namespace of mode %s: %v, want %s naming userns_options", mode, err, want)
		}
	}
}

// TestSupplementalGroupsPolicy: the groups a container's process has (its
// /proc status Groups: line, as the kernel sees them, and id -G in an exec)
// are exactly the supplemental_groups ContainerStatus reports, across the
// security contexts kubelet sends: the primary group is among them (as
// containerd and CRI-O set it), Merge (the default) adds the groups the
// image's /etc/group gives the user, Strict only the requested ones, in a
// user namespace too.
func TestSupplementalGroupsPolicy(t *testing.T) {
	const image = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"
	p := newPodEnvWith(t, "", image)
	if _, err := p.pull(t.Context(), image, nil); err != nil {
		t.Fatal(err)
	}
	i64 := func(v int64) *runtime.Int64Value { return &runtime.Int64Value{Value: v} }
	// The image's USER is 1000 (default-user), in group 50000 by its /etc/group.
	type groupsCase struct {
		name string
		sc   *runtime.LinuxContainerSecurityContext
		want []int64 // sorted
	}
	cases := []groupsCase{
		{"image-user", &runtime.LinuxContainerSecurityContext{}, []int64{1000, 50000}},
		{"merge", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234}}, []int64{1000, 1234, 50000}},
		{"strict", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234},
			SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Strict}, []int64{1000, 1234}},
		{"uid-and-gid-not-in-image", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(1234), RunAsGroup: i64(2345)}, []int64{2345}},
		{"run-as-group-merge", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(2345), SupplementalGroups: []int64{7}},
			[]int64{7, 2345, 50000}},
		{"run-as-username", &runtime.LinuxContainerSecurityContext{RunAsUsername: "default-user"}, []int64{1000, 50000}},
		{"root", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(0)}, []int64{0}},
	}
	check := func(t *testing.T, pod string, podCfg *runtime.PodSandboxConfig, nsOpts *runtime.NamespaceOption, tc groupsCase) {
		t.Helper()
		sc := proto.Clone(tc.sc).(*runtime.LinuxContainerSecurityContext)
		sc.NamespaceOptions = nsOpts
		resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
			PodSandboxId: pod, SandboxConfig: podCfg,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: tc.name},
				Image:    &runtime.ImageSpec{Image: image},
				Command:  []string{"sleep", "1000"},
				Linux:    &runtime.LinuxContainerConfig{SecurityContext: sc},
			},
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		p.start(t, resp.ContainerId)
		reported := p.status(t, resp.ContainerId).GetUser().GetLinux().GetSupplementalGroups()
		slices.Sort(reported)
		if !slices.Equal(reported, tc.want) {
			t.Errorf("%s: ContainerStatus supplemental groups %v, want %v", tc.name, reported, tc.want)
		}
		// The init process (PID 1 in its own PID namespace), as the
		// container's user namespace sees it.
		statusFile, _ := p.exec(t, resp.ContainerId, "cat", "/proc/1/status")
		if got := procGroups(t, statusFile); !slices.Equal(got, reported) {
			t.Errorf("%s: the process has groups %v, the status reports %v", tc.name, got, reported)
		}
		out, _ := p.exec(t, resp.ContainerId, "id", "-G")
		var idGroups []int64
		for _, f := range strings.Fields(out) {
			var g int64
			fmt.Sscan(f, &g)
			if !slices.Contains(idGroups, g) {
				idGroups = append(idGroups, g)
			}
		}
		slices.Sort(idGroups)
		if !slices.Equal(idGroups, reported) {
			t.Errorf("%s: id -G in an exec = %q, the status reports %v", tc.name, strings.TrimSpace(out), reported)
		}
	}
	ownPID := &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
	pod, podCfg := p.runPod(t, "groups")
	for _, tc := range cases {
		check(t, pod, podCfg, ownPID, tc)
	}

	// The same in a pod with a user namespace of its own (crun: the
	// default runc may be too old for it).
	mapping := []*runtime.IDMapping{{ContainerId: 0, HostId: 600000, Length: 65536}}
	usernsOpts := &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER,
		UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: mapping, Gids: mapping}}
	usernsCfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "groups-userns", Namespace: "e2e", Uid: "groups-userns"},
		LogDirectory: t.TempDir(),
		Linux:        &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: usernsOpts}},
	}
	usernsPod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: usernsCfg, RuntimeHandler: "crun"})
	if err != nil {
		t.Fatal(err)
	}
	check(t, usernsPod.PodSandboxId, usernsCfg, usernsOpts, cases[3])

	st, err := p.runtime.Status(t.Context(), &runtime.StatusRequest{})
	if err != nil || !st.GetFeatures().GetSupplementalGroupsPolicy() {
		t.Errorf("Status features do not announce supplemental_groups_policy: %v, %v", st.GetFeatures(), err)
	}
}

// procGroups is the sorted Groups: line of a /proc/<pid>/status file.
func procGroups(t *testing.T, status string) []int64 {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		var out []int64
		for _, f := range strings.Fields(rest) {
			var g int64
			if _, err := fmt.Sscan(f, &g); err != nil {
				t.Fatalf("Groups line %q: %v", line, err)
			}
			out = append(out, g)
		}
		slices.Sort(out)
		return out
	}
	t.Fatalf("no Groups: line in %q", status)
	return nil
}

// TestImageVolumes: Mount.image mounts another image's file system (or a
// subdirectory of it) read-only in the container, reports the image in
// ContainerStatus, refuses writable or escaping volumes, and leaves no
// mount or snapshot behind (newPodEnv's cleanup counts mounts).
func TestImageVolumes(t *testing.T) {
	const image = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"
	p := newPodEnvWith(t, "", image)
	imageID, err := p.pull(t.Context(), image, nil)
	if err != nil {
		t.Fatal(err)
	}
	pod, podCfg := p.runPod(t, "image-volumes")
	vol := func(readonly bool, sub string) []*runtime.Mount {
		return []*runtime.Mount{{ContainerPath: "/vol", Readonly: readonly, Image: &runtime.ImageSpec{Image: image}, ImageSubPath: sub}}
	}
	ctr, err := p.createWith(t, pod, podCfg, "with-volume", vol(true, "etc"), nil, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, ctr)
	if out, code := p.exec(t, ctr, "cat", "/vol/group"); code != 0 || !strings.Contains(out, "group-defined-in-image:x:50000") {
		t.Errorf("the image's /etc/group at /vol/group: exit %d, %s", code, out)
	}
	if out, code := p.exec(t, ctr, "touch", "/vol/new"); code == 0 || !strings.Contains(out, "Read-only file system") {
		t.Errorf("writing into an image volume: exit %d, %s", code, out)
	}
	var reported *runtime.Mount
	for _, m := range p.status(t, ctr).GetMounts() {
		if m.ContainerPath == "/vol" {
			reported = m
		}
	}
	if reported.GetImage().GetImageRef() != imageID || reported.GetImageSubPath() != "etc" {
		t.Errorf("ContainerStatus mount = %v, want image_ref %s", reported, imageID)
	}

	for name, tc := range map[string]struct {
		mounts []*runtime.Mount
		code   codes.Code
	}{
		"writable":          {vol(false, ""), codes.InvalidArgument},
		"escaping sub path": {vol(true, "../../etc"), codes.InvalidArgument},
		"missing sub path":  {vol(true, "no/such/dir"), codes.InvalidArgument},
		"image not pulled":  {[]*runtime.Mount{{ContainerPath: "/vol", Readonly: true, Image: &runtime.ImageSpec{Image: "registry.k8s.io/pause:3.10"}}}, codes.NotFound},
	} {
		if _, err := p.createWith(t, pod, podCfg, strings.ReplaceAll(name, " ", "-"), tc.mounts, nil, "true"); status.Code(err) != tc.code {
			t.Errorf("%s image volume: %v, want %s", name, err, tc.code)
		}
	}
	if _, err := p.runtime.RemoveContainer(t.Context(), &runtime.RemoveContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateContainerResources: new limits reach the running container's
// cgroup, show in ContainerStatus, and are still there after a daemon
// SIGKILL and restart.
func TestUpdateContainerResources(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "update")
	resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "limited"},
			Image:    &runtime.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "1000"},
			Linux:    &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuPeriod: 100000, CpuQuota: 50000}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctr := resp.ContainerId
	p.start(t, ctr)
	cgroup := containerCgroup(t, p, ctr)
	if got := readCgroupFile(t, "memory", cgroup, "memory.limit_in_bytes", "memory.max"); got != fmt.Sprint(64<<20) {
		t.Fatalf("memory limit before the update: %s", got)
	}
	want := &runtime.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 256}
	if _, err := p.runtime.UpdateContainerResources(t.Context(), &runtime.UpdateContainerResourcesRequest{ContainerId: ctr, Linux: want}); err != nil {
		t.Fatal(err)
	}
	if got := readCgroupFile(t, "memory", cgroup, "memory.limit_in_bytes", "memory.max"); got != fmt.Sprint(128<<20) {
		t.Errorf("memory limit after the update: %s", got)
	}
	if got := readCgroupFile(t, "cpu", cgroup, "cpu.cfs_quota_us", ""); got != "20000" {
		t.Errorf("cpu quota after the update: %s", got)
	}

	p.killAndRestart(t)
	st, err := p.runtime.ContainerStatus(t.Context(), &runtime.ContainerStatusRequest{ContainerId: ctr})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Status.GetResources().GetLinux(); got.GetMemoryLimitInBytes() != want.MemoryLimitInBytes || got.GetCpuQuota() != want.CpuQuota || got.GetCpuShares() != want.CpuShares {
		t.Errorf("ContainerStatus resources after restart = %v, want %v", got, want)
	}
	_, err = p.runtime.UpdateContainerResources(t.Context(), &runtime.UpdateContainerResourcesRequest{ContainerId: ctr})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("UpdateContainerResources without resources: %v, want InvalidArgument", err)
	}
}

// containerCgroup is the container's cgroup path from its verbose status.
func containerCgroup(t *testing.T, p *podEnv, ctr string) string {
	t.Helper()
	resp, err := p.runtime.ContainerStatus(t.Context(), &runtime.ContainerStatusRequest{ContainerId: ctr, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		RuntimeSpec struct {
			Linux struct{ CgroupsPath string } `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.RuntimeSpec.Linux.CgroupsPath == "" {
		t.Fatalf("no cgroupsPath in verbose status: %v", err)
	}
	return info.RuntimeSpec.Linux.CgroupsPath
}

// readCgroupFile reads a cgroup file on v1 (controller/path/v1File) or v2
// (path/v2File).
func readCgroupFile(t *testing.T, controller, cgroup, v1File, v2File string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, cgroup, v1File))
	if err != nil && v2File != "" {
		b, err = os.ReadFile(filepath.Join("/sys/fs/cgroup", cgroup, v2File))
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestDevicesAndSysctls: a CRI device appears at its container path with
// the host device's numbers and the given permissions; a privileged
// container gets the host's devices; a path that is no device is refused.
// A namespaced sysctl is set in the pod; one that is not is refused.
func TestDevicesAndSysctls(t *testing.T) {
	p := newPodEnv(t)
	cfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "devices", Namespace: "e2e", Uid: "devices"},
		LogDirectory: t.TempDir(),
		Linux:        &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}},
	}
	pod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string, devs []*runtime.Device, privileged bool) (string, error) {
		resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
			PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: name},
				Image:    &runtime.ImageSpec{Image: busyboxImage},
				Command:  []string{"sleep", "1000"},
				Devices:  devs,
				Linux:    &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{Privileged: privileged}},
			},
		})
		return resp.GetContainerId(), err
	}
	ctr, err := create("with-device", []*runtime.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, ctr)
	if out, code := p.exec(t, ctr, "sh", "-c", "stat -c '%t:%T %F' /dev/mynull && echo x > /dev/mynull && cat /proc/sys/net/ipv4/ip_unprivileged_port_start"); code != 0 ||
		!strings.Contains(out, "1:3 character special file") || !strings.HasSuffix(strings.TrimSpace(out), "80") {
		t.Errorf("device and sysctl in the container: exit %d:\n%s", code, out)
	}
	if out, code := p.exec(t, ctr, "test", "-e", "/dev/kmsg"); code == 0 {
		t.Errorf("an unprivileged container sees the host's /dev/kmsg: %s", out)
	}
	priv, err := create("privileged", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, priv)
	if out, code := p.exec(t, priv, "test", "-c", "/dev/kmsg"); code != 0 {
		t.Errorf("a privileged container lacks the host's /dev/kmsg: %s", out)
	}
	if _, err := create("not-a-device", []*runtime.Device{{HostPath: "/etc/hostname", ContainerPath: "/dev/x", Permissions: "r"}}, false); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a device that is a plain file: %v, want InvalidArgument", err)
	}
	bad := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "host-sysctl", Namespace: "e2e", Uid: "host-sysctl"},
		Linux:    &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{"vm.swappiness": "0"}},
	}
	if _, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: bad}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "vm.swappiness") {
		t.Errorf("a host-wide sysctl: %v, want InvalidArgument naming it", err)
	}
}

// TestCDIDevices: a device a CDI spec defines, named in CDI_devices or in a
// cdi.k8s.io/ annotation, brings its device node and environment into the
// container; a device no spec defines is refused. Specs written after the
// daemon started are found.
func TestCDIDevices(t *testing.T) {
	cdiDir := t.TempDir()
	p := newPodEnvWith(t, "")
	p.daemon.Stop()
	conf, err := os.ReadFile(p.daemon.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.daemon.Config, append(conf, fmt.Sprintf("\n[cdi]\nspec_dirs = [%q]\n", cdiDir)...), 0o644); err != nil {
		t.Fatal(err)
	}
	p.restart(t)
	const spec = `cdiVersion: "0.6.0"
kind: berth.test/null
devices:
- name: null0
  containerEdits:
    deviceNodes:
    - path: /dev/cdi-null
      hostPath: /dev/null
    env:
    - CDI_INJECTED=null0
`
	if err := os.WriteFile(filepath.Join(cdiDir, "berth-test.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	pod, podCfg := p.runPod(t, "cdi")
	for name, cfg := range map[string]*runtime.ContainerConfig{
		"by-field":      {CDIDevices: []*runtime.CDIDevice{{Name: "berth.test/null=null0"}}},
		"by-annotation": {Annotations: map[string]string{"cdi.k8s.io/test": "berth.test/null=null0"}},
	} {
		cfg.Metadata = &runtime.ContainerMetadata{Name: name}
		cfg.Image = &runtime.ImageSpec{Image: busyboxImage}
		cfg.Command = []string{"sleep", "1000"}
		resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: podCfg, Config: cfg})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p.start(t, resp.ContainerId)
		if out, code := p.exec(t, resp.ContainerId, "sh", "-c", "test -c /dev/cdi-null && echo $CDI_INJECTED > /dev/cdi-null && echo $CDI_INJECTED"); code != 0 || strings.TrimSpace(out) != "null0" {
			t.Errorf("%s: CDI device in the container: exit %d, %q", name, code, out)
		}
	}
	_, err = p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: podCfg, Config: &runtime.ContainerConfig{
		Metadata:   &runtime.ContainerMetadata{Name: "unknown"},
		Image:      &runtime.ImageSpec{Image: busyboxImage},
		CDIDevices: []*runtime.CDIDevice{{Name: "berth.test/null=nope"}},
	}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "berth.test/null=nope") {
		t.Errorf("an undefined CDI device: %v, want NotFound naming it", err)
	}
}

// TestAppArmorProfileRefusedWhenUnavailable: a Localhost AppArmor profile
// the host cannot apply (no AppArmor here; or not loaded, on a host with
// it) fails CreateContainer with FailedPrecondition naming the field,
// rather than running the container unconfined.
func TestAppArmorProfileRefusedWhenUnavailable(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "apparmor")
	_, err := p.createWith(t, pod, podCfg, "confined", nil, &runtime.LinuxContainerSecurityContext{
		Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "berth-e2e-no-such-profile"},
	}, "true")
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "apparmor") {
		t.Fatalf("an AppArmor profile that cannot be applied: %v, want FailedPrecondition", err)
	}
}

// TestHugepageLimitAndUnified: a hugepage limit reaches the container's
// hugetlb cgroup; unified (cgroup v2) keys on this cgroup v1 host are
// refused, naming the field.
func TestHugepageLimitAndUnified(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "hugepages")
	create := func(name string, res *runtime.LinuxContainerResources) (string, error) {
		resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
			PodSandboxId: pod, SandboxConfig: podCfg,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: name},
				Image:    &runtime.ImageSpec{Image: busyboxImage},
				Command:  []string{"sleep", "1000"},
				Linux:    &runtime.LinuxContainerConfig{Resources: res},
			},
		})
		return resp.GetContainerId(), err
	}
	ctr, err := create("huge", &runtime.LinuxContainerResources{HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, ctr)
	if got := readCgroupFile(t, "hugetlb", containerCgroup(t, p, ctr), "hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max"); got != fmt.Sprint(4<<20) {
		t.Errorf("hugetlb 2MB limit = %s, want %d", got, 4<<20)
	}
	v2, _ := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	_, err = create("unified", &runtime.LinuxContainerResources{Unified: map[string]string{"memory.high": "100000000"}})
	if v2 == nil && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "unified")) {
		t.Errorf("unified keys on cgroup v1: %v, want InvalidArgument naming unified", err)
	}
	if v2 != nil && err != nil {
		t.Errorf("unified keys on cgroup v2: %v", err)
	}
}

// TestUserNamespaces: pods in user namespaces of their own, on the handlers
// whose runtimes make idmapped mounts (crun 1.8 and the runc built from
// source, which the default runc handler runs instead of Debian's), with and without a shared PID namespace. Inside, root is the mapping's first host
// ID, the image's files, the volumes and image volumes keep their owners
// (idmapped), the
// pod has its hostname and network; on the host the processes and the
// files they write belong to the mapped IDs. It all survives a daemon
// SIGKILL, and removing the pods leaves nothing mounted.
func TestUserNamespaces(t *testing.T) {
	const pauseImage = "registry.k8s.io/pause:3.10" // shared PID in a user namespace needs it
	p := newPodEnvWith(t, "", pauseImage)
	const hostID = 200000
	mapping := []*runtime.IDMapping{{ContainerId: 0, HostId: hostID, Length: 65536}}
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "from-host"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	type podCtr struct {
		pod, ctr, name string
		cfg            *runtime.PodSandboxConfig
		nsOpts         *runtime.NamespaceOption
	}
	var made []podCtr
	type podCase struct {
		handler string
		pid     runtime.NamespaceMode
	}
	var cases []podCase
	// runc: the default handler, which runs its userns_path runtime here.
	for _, handler := range []string{"runc", "crun", "runc-upstream"} {
		for _, pid := range []runtime.NamespaceMode{runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_POD} {
			cases = append(cases, podCase{handler, pid})
		}
	}
	for _, tc := range cases {
		pid := tc.pid
		name := tc.handler + "-pid-" + strings.ToLower(pid.String())
		nsOpts := &runtime.NamespaceOption{Pid: pid, UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: mapping, Gids: mapping}}
		cfg := &runtime.PodSandboxConfig{
			Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: name},
			Hostname:     name,
			LogDirectory: t.TempDir(),
			Linux:        &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: nsOpts}},
		}
		pod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: tc.handler})
		if err != nil {
			t.Fatalf("RunPodSandbox %s: %v", name, err)
		}
		ps, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
		if err != nil || !strings.HasPrefix(ps.GetStatus().GetNetwork().GetIp(), "10.201.") {
			t.Fatalf("%s: pod IP %q (%v), want one from the bridge network", name, ps.GetStatus().GetNetwork().GetIp(), err)
		}
		ctr, err := p.createWith(t, pod.PodSandboxId, cfg, "c", []*runtime.Mount{
			{ContainerPath: "/vol", HostPath: vol},
			{ContainerPath: "/img", Readonly: true, Image: &runtime.ImageSpec{Image: busyboxImage}},
		},
			&runtime.LinuxContainerSecurityContext{NamespaceOptions: nsOpts}, "sleep", "1000")
		if err != nil {
			t.Fatalf("CreateContainer in %s: %v", name, err)
		}
		p.start(t, ctr)
		made = append(made, podCtr{pod.PodSandboxId, ctr, name, cfg, nsOpts})

		for cmd, want := range map[string]string{
			"cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'": "0 200000 65536\n0 200000 65536",
			"id -u; id -g": "0\n0",
			"stat -c %u:%g / /bin/busybox /etc/passwd /etc/hosts /vol/from-host /img/bin/busybox": "0:0\n0:0\n0:0\n0:0\n0:0\n0:0",
			"hostname": name,
			"cat /sys/class/net/lo/operstate; test -d /sys/class/net/eth0 && echo eth0": "unknown\neth0",
			"touch /made-inside /vol/made-in-" + name + " && echo ok":                   "ok",
		} {
			if out, code := p.exec(t, ctr, "sh", "-c", cmd); code != 0 || strings.TrimSpace(out) != want {
				t.Errorf("%s: %s: exit %d, output %q, want %q", name, cmd, code, out, want)
			}
		}
		if pid == runtime.NamespaceMode_POD {
			if out, _ := p.exec(t, ctr, "cat", "/proc/1/cmdline"); out != "/pause\x00" {
				t.Errorf("%s: PID 1 of the shared PID namespace runs %q, want the pause container's /pause", name, out)
			}
		}
		// On the host: the container's root is the first mapped ID; what it
		// writes in its rootfs is that ID's, what it writes in an idmapped
		// volume is the host's root's (the volume's owner).
		proc := mainPid(t, p, ctr)
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", proc)); err != nil || !strings.Contains(string(st), fmt.Sprintf("\nUid:\t%d\t", hostID)) {
			t.Errorf("%s: the container's process on the host is not uid %d: %v\n%s", name, hostID, err, st)
		}
		// Only root, and the pod's root through its group, may enter the
		// bundle (and so reach the rootfs).
		if mode, uid, gid := statOwner(t, filepath.Join(p.daemon.State, "containers", ctr)); mode != 0o710 || uid != 0 || gid != hostID {
			t.Errorf("%s: bundle mode %o owner %d:%d, want 710 0:%d", name, mode, uid, gid, hostID)
		}
		for path, uid := range map[string]int{
			fmt.Sprintf("/proc/%d/root/made-inside", proc): hostID,
			filepath.Join(vol, "made-in-"+name):            0,
		} {
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil || int(st.Uid) != uid || int(st.Gid) != uid {
				t.Errorf("%s: %s owned by %d:%d (%v), want %d:%d", name, path, st.Uid, st.Gid, err, uid, uid)
			}
		}
	}

	p.killAndRestart(t)
	for _, m := range made {
		if out, code := p.exec(t, m.ctr, "id", "-u"); code != 0 || strings.TrimSpace(out) != "0" {
			t.Errorf("%s after a daemon SIGKILL: id -u = %q (exit %d)", m.name, out, code)
		}
		// A container made after the restart joins the recorded namespace.
		late, err := p.createWith(t, m.pod, m.cfg, "late", nil, &runtime.LinuxContainerSecurityContext{NamespaceOptions: m.nsOpts}, "sleep", "1000")
		if err != nil {
			t.Fatalf("%s: CreateContainer after a daemon SIGKILL: %v", m.name, err)
		}
		p.start(t, late)
		if out, code := p.exec(t, late, "sh", "-c", "cat /proc/self/uid_map | tr -s ' '; stat -c %u:%g /bin/busybox; readlink /proc/self/ns/user"); code != 0 ||
			!strings.HasPrefix(out, " 0 200000 65536\n0:0\n") || !strings.HasSuffix(out, mustReadlink(t, fmt.Sprintf("/proc/%d/ns/user", mainPid(t, p, m.ctr)))+"\n") {
			t.Errorf("%s: container made after a daemon SIGKILL: %q (exit %d), want the pod's mapping, owners and user namespace", m.name, out, code)
		}
	}

	hostPID := &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE, UsernsOptions: made[0].nsOpts.UsernsOptions}
	if _, err := p.createWith(t, made[0].pod, made[0].cfg, "host-pid", nil, &runtime.LinuxContainerSecurityContext{NamespaceOptions: hostPID}, "true"); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "namespace_options.pid") {
		t.Errorf("container on the host's PID namespace in a user-namespace pod: %v, want InvalidArgument naming namespace_options.pid", err)
	}

	// Mappings on a volume need a pod in a user namespace.
	plain, plainCfg := p.runPod(t, "no-userns")
	_, err := p.createWith(t, plain, plainCfg, "c", []*runtime.Mount{{ContainerPath: "/vol", HostPath: vol, UidMappings: mapping, GidMappings: mapping}}, nil, "true")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "mounts[0]") {
		t.Errorf("idmapped volume in a pod without a user namespace: %v, want InvalidArgument naming mounts[0]", err)
	}
	// newPodEnv's cleanup removes the pods and checks that nothing (the
	// pinned user namespaces included) stays mounted.
}

// TestTargetPIDNamespaceAndAmbientCapabilities: a container whose PID
// namespace is TARGET sees its target's processes (PID 1 is the target's
// command), as ephemeral debug containers need; bad targets get clear
// codes. A non-root process keeps an ambient capability, and only it.
func TestTargetPIDNamespaceAndAmbientCapabilities(t *testing.T) {
	p := newPodEnv(t)
	// Every container in a PID namespace of its own, kubelet's default.
	own := &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
	podCfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "debug-target", Namespace: "e2e", Uid: "debug-target"},
		LogDirectory: t.TempDir(),
		Linux:        &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: own}},
	}
	resp, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	pod := resp.PodSandboxId
	ownPID := &runtime.LinuxContainerSecurityContext{NamespaceOptions: own}
	target, err := p.createWith(t, pod, podCfg, "app", nil, ownPID, "sleep", "1001")
	if err != nil {
		t.Fatal(err)
	}
	target2, err := p.createWith(t, pod, podCfg, "not-started", nil, ownPID, "sleep", "1002")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, target)
	if mode, uid, gid := statOwner(t, filepath.Join(p.daemon.State, "containers", target)); mode != 0o700 || uid != 0 || gid != 0 {
		t.Errorf("bundle mode %o owner %d:%d, want 700 0:0: no host user may reach a container's rootfs", mode, uid, gid)
	}
	targetOpts := func(id string) *runtime.LinuxContainerSecurityContext {
		return &runtime.LinuxContainerSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: id}}
	}
	debug, err := p.createWith(t, pod, podCfg, "debugger", nil, targetOpts(target), "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, debug)
	if out, code := p.exec(t, debug, "cat", "/proc/1/cmdline"); code != 0 || out != "sleep\x001001\x00" {
		t.Errorf("PID 1 seen by the debug container: %q (exit %d), want the target's sleep 1001", out, code)
	}
	// A target that stops between CreateContainer and StartContainer: the
	// start is refused rather than joining whatever has the PID now.
	lateTarget, err := p.createWith(t, pod, podCfg, "late-target", nil, ownPID, "sleep", "1003")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, lateTarget)
	lateDebug, err := p.createWith(t, pod, podCfg, "late-debugger", nil, targetOpts(lateTarget), "true")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: lateTarget}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: lateDebug}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "target_id") {
		t.Errorf("starting a debug container whose target stopped: %v, want FailedPrecondition naming target_id", err)
	}
	other, otherCfg := p.runPod(t, "other-pod")
	stranger := p.createContainer(t, other, otherCfg, "stranger", "sleep", "1000")
	p.start(t, stranger)
	for id, want := range map[string]codes.Code{
		"":            codes.InvalidArgument,
		"no-such-ctr": codes.NotFound,
		target2:       codes.FailedPrecondition,
		stranger:      codes.InvalidArgument,
	} {
		_, err := p.createWith(t, pod, podCfg, "bad-target", nil, targetOpts(id), "true")
		if status.Code(err) != want || !strings.Contains(err.Error(), "target_id") {
			t.Errorf("target %q: %v, want %s naming target_id", id, err, want)
		}
	}

	uid := &runtime.Int64Value{Value: 1000}
	for name, tc := range map[string]struct {
		caps             *runtime.Capability
		wantEff, wantAmb string
	}{
		"ambient": {&runtime.Capability{AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}}, "0000000000000400", "0000000000000400"},
		"plain":   {nil, "0000000000000000", "0000000000000000"},
	} {
		ctr, err := p.createWith(t, pod, podCfg, "caps-"+name, nil, &runtime.LinuxContainerSecurityContext{RunAsUser: uid, Capabilities: tc.caps, NamespaceOptions: own}, "sleep", "1000")
		if err != nil {
			t.Fatal(err)
		}
		p.start(t, ctr)
		out, code := p.exec(t, ctr, "grep", "-E", "^Cap(Eff|Amb)", "/proc/1/status")
		if want := fmt.Sprintf("CapEff:\t%s\nCapAmb:\t%s\n", tc.wantEff, tc.wantAmb); code != 0 || out != want {
			t.Errorf("%s: uid 1000's capabilities %q (exit %d), want %q", name, out, code, want)
		}
	}
	if _, err := p.createWith(t, pod, podCfg, "bogus-ambient", nil, &runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{AddAmbientCapabilities: []string{"NOT_A_CAP"}}}, "true"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown ambient capability: %v, want InvalidArgument", err)
	}
}

func mustReadlink(t *testing.T, path string) string {
	t.Helper()
	target, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// statOwner is path's permission bits and owner.
func statOwner(t *testing.T, path string) (mode uint32, uid, gid int) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777, int(st.Uid), int(st.Gid)
}
