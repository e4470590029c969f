package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func countMounts(t *testing.T, under string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], under) {
			n++
		}
	}
	return n
}

func TestCreateAndRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("pinning namespaces needs root; run the tests as root")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "pod")
	p, err := Create(Spec{Dir: dir, Config: &runtime.PodSandboxConfig{
		Metadata:  &runtime.PodSandboxMetadata{Name: "web"},
		Hostname:  "web-0",
		DnsConfig: &runtime.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := countMounts(t, base); got != 4 {
		t.Errorf("%d mounts under the pod dir, want 4 (net, ipc, uts, shm)", got)
	}
	// The pinned UTS namespace carries the hostname; lo is up in the netns.
	if out, err := exec.Command("nsenter", "--uts="+p.UTSNS, "hostname").Output(); err != nil || string(out) != "web-0\n" {
		t.Errorf("hostname in the pinned namespace = %q, %v", out, err)
	}
	if out, err := exec.Command("nsenter", "--net="+p.NetNS, "ip", "-o", "link", "show", "lo").Output(); err != nil || !strings.Contains(string(out), ",UP") {
		t.Errorf("lo in the pinned netns: %q, %v", out, err)
	}
	if b, _ := os.ReadFile(p.Hostname); string(b) != "web-0\n" {
		t.Errorf("hostname file = %q", b)
	}
	resolv, _ := os.ReadFile(p.ResolvConf)
	if string(resolv) != "search ns.svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n" {
		t.Errorf("resolv.conf = %q", resolv)
	}
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if got := countMounts(t, base); got != 0 {
		t.Errorf("%d mounts left after Remove", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
	if err := Remove(dir); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestHostNamespaces(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pod")
	p, err := Create(Spec{Dir: dir, Config: &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "h"},
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(dir)
	host, _ := os.Hostname()
	if p.NetNS != "" || p.UTSNS != "" || p.IPCNS != "" || p.Shm != "/dev/shm" {
		t.Errorf("host namespaces pinned: %+v", p)
	}
	if b, _ := os.ReadFile(p.Hostname); string(b) != host+"\n" {
		t.Errorf("host-network pod hostname = %q, want %q", b, host)
	}
}

// TestUserNamespace: a pod user namespace carries its mappings and owns the
// pod's network, IPC and UTS namespaces; Remove unpins all four.
func TestUserNamespace(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "pod")
	mapping := []*runtime.IDMapping{{ContainerId: 0, HostId: 300000, Length: 65536}}
	p, err := Create(Spec{Dir: dir, Config: &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "u"},
		Hostname: "userns-0",
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: mapping, Gids: mapping}},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := countMounts(t, base); got != 5 {
		t.Errorf("%d mounts under the pod dir, want 5 (user, net, ipc, uts, shm)", got)
	}
	for _, f := range []string{"uid_map", "gid_map"} {
		out, err := exec.Command("nsenter", "--user="+p.UserNS, "cat", "/proc/self/"+f).Output()
		if err != nil || strings.Join(strings.Fields(string(out)), " ") != "0 300000 65536" {
			t.Errorf("%s in the pinned user namespace = %q, %v", f, out, err)
		}
	}
	var user unix.Stat_t
	if err := unix.Stat(p.UserNS, &user); err != nil {
		t.Fatal(err)
	}
	for kind, path := range map[string]string{"net": p.NetNS, "ipc": p.IPCNS, "uts": p.UTSNS} {
		if owner := ownerUserNS(t, path); owner != user.Ino {
			t.Errorf("%s namespace owned by user namespace %d, want the pod's %d", kind, owner, user.Ino)
		}
	}
	if out, err := exec.Command("nsenter", "--uts="+p.UTSNS, "hostname").Output(); err != nil || string(out) != "userns-0\n" {
		t.Errorf("hostname in the pinned namespace = %q, %v", out, err)
	}
	if out, err := exec.Command("nsenter", "--net="+p.NetNS, "ip", "-o", "link", "show", "lo").Output(); err != nil || !strings.Contains(string(out), ",UP") {
		t.Errorf("lo in the pinned netns: %q, %v", out, err)
	}
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if got := countMounts(t, base); got != 0 {
		t.Errorf("%d mounts left after Remove", got)
	}
}

// ownerUserNS is the inode of the user namespace that owns the namespace
// pinned at path.
func ownerUserNS(t *testing.T, path string) uint64 {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	owner, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS %s: %v", path, err)
	}
	defer unix.Close(owner)
	var st unix.Stat_t
	if err := unix.Fstat(owner, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
