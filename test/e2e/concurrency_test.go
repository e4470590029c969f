package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// TestManyPodsInParallel creates, starts, stops and removes 100 pods of two
// containers each, all at once, on the bridge network (every fourth pod
// with a host port), then checks that nothing is left: no mount, no
// monitor, no pod or container directory, no veth, no IP reservation, no
// iptables rule, no cgroup.
func TestManyPodsInParallel(t *testing.T) {
	p := newPodEnv(t)
	before := hostNetNow(t)
	// A cgroup parent of this test's own, so that the check below sees only
	// what these pods made.
	parent := "/berth-e2e-parallel-" + fmt.Sprint(time.Now().UnixNano())
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
		dirs = append(dirs, "/sys/fs/cgroup"+parent)
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	const pods = 100
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	for i := range pods {
		wg.Go(func() {
			var ports []*runtime.PortMapping
			if i%4 == 0 {
				ports = []*runtime.PortMapping{{ContainerPort: 80, HostPort: int32(30000 + i)}}
			}
			if err := p.podRoundTrip(t, fmt.Sprintf("par-%02d", i), parent, ports); err != nil {
				errs <- fmt.Errorf("pod %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	list, err := p.runtime.ListPodSandbox(t.Context(), &runtime.ListPodSandboxRequest{})
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("pods left: %v, %v", list, err)
	}
	leaks, err := e2eenv.Leaks(filepath.Dir(p.daemon.Root))
	if err != nil || len(leaks) > 0 {
		t.Fatalf("leaked (%v):\n%s", err, strings.Join(leaks, "\n"))
	}
	p.checkNothingLeft(t, before)
	// Every hierarchy: the v1 controllers, or the v2 unified tree.
	parents, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	parents = append(parents, "/sys/fs/cgroup"+parent)
	for _, parent := range parents {
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.IsDir() {
				t.Errorf("cgroup left: %s/%s", parent, e.Name())
			}
		}
	}
}

func (p *podEnv) podRoundTrip(t *testing.T, name, cgroupParent string, ports []*runtime.PortMapping) error {
	return p.podRoundTripIn(t, &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "par", Uid: name},
		Linux:        &runtime.LinuxPodSandboxConfig{CgroupParent: cgroupParent},
		PortMappings: ports,
	}, "")
}

// podRoundTripIn is podRoundTrip for a pod of config cfg on handler; the
// containers take the pod's namespace options.
func (p *podEnv) podRoundTripIn(t *testing.T, cfg *runtime.PodSandboxConfig, handler string) error {
	ctx := t.Context()
	pod, err := p.runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		return fmt.Errorf("RunPodSandbox: %w", err)
	}
	var ids []string
	for _, c := range []string{"a", "b"} {
		ctr, err := p.runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{
			PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: c},
				Image:    &runtime.ImageSpec{Image: busyboxImage},
				Command:  []string{"sleep", "1000"},
				Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
					NamespaceOptions: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
				}},
			},
		})
		if err != nil {
			return fmt.Errorf("CreateContainer: %w", err)
		}
		if _, err := p.runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
			return fmt.Errorf("StartContainer: %w", err)
		}
		ids = append(ids, ctr.ContainerId)
	}
	for _, id := range ids {
		if _, err := p.runtime.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
			return fmt.Errorf("StopContainer: %w", err)
		}
		if _, err := p.runtime.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			return fmt.Errorf("RemoveContainer: %w", err)
		}
	}
	if _, err := p.runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := p.runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return nil
}

// podChain names a chain the CNI plugins make for one pod: bridge's
// masquerading chain CNI-<hash>, portmap's CNI-DN-<hash> and CNI-SN-<hash>.
// The plugins' shared chains (CNI-HOSTPORT-*, CNI-FORWARD, …) are made on
// first use and never removed, so they say nothing about what a test left.
var podChain = regexp.MustCompile(`\bCNI-(?:DN-|SN-)?[0-9a-f]{16,}\b`)

// cniRules lists the iptables chains and rules the CNI plugins made for
// pods (bridge masquerading, portmap DNAT): each names a per-pod chain.
func cniRules(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if podChain.MatchString(line) {
			rules = append(rules, line)
		}
	}
	return rules
}

func countVeths(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), "\n")
}

// hostNet is what pods add to the host's network: veths, host-local IP
// reservations, CNI iptables rules.
type hostNet struct {
	veths        int
	reservations []string
	rules        []string
}

// hostNetNow takes stock, so that a test counts only what it made itself
// (an earlier run or another runtime on the host may have left some).
func hostNetNow(t *testing.T) hostNet {
	t.Helper()
	res, _ := filepath.Glob("/var/lib/cni/networks/berth-e2e/10.*")
	return hostNet{veths: countVeths(t), reservations: res, rules: cniRules(t)}
}

// checkNothingLeft, after every pod is removed, finds no veth, host-local
// IP reservation or CNI iptables rule beyond those there before, and no
// pod, container or pause directory in the state.
func (p *podEnv) checkNothingLeft(t *testing.T, before hostNet) {
	t.Helper()
	now := hostNetNow(t)
	if now.veths != before.veths {
		t.Errorf("%d veth interfaces after, %d before", now.veths, before.veths)
	}
	var left []string
	for _, r := range now.reservations {
		if !slices.Contains(before.reservations, r) {
			left = append(left, r)
		}
	}
	if len(left) != 0 {
		t.Errorf("IP reservations left: %v", left)
	}
	if len(now.rules) != len(before.rules) {
		t.Errorf("%d CNI iptables rules before, %d after:\n%s", len(before.rules), len(now.rules), strings.Join(now.rules, "\n"))
	}
	for _, dir := range []string{"pods", "containers", "pause"} {
		if n := countDirs(t, filepath.Join(p.daemon.State, dir)); n != 0 {
			t.Errorf("%d entries left in state/%s", n, dir)
		}
	}
}
