package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
