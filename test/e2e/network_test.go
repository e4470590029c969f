package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// networkLeaks lists what CNI left for pod id on the host: IP reservations
// of host-local, iptables rules naming it.
func networkLeaks(t *testing.T, id string) []string {
	t.Helper()
	var leaks []string
	files, _ := filepath.Glob("/var/lib/cni/networks/berth-e2e/*")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), id) {
			leaks = append(leaks, "ip reservation "+filepath.Base(f))
		}
	}
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, id) {
			leaks = append(leaks, "iptables: "+line)
		}
	}
	return leaks
}

func (p *podEnv) runNetPod(t *testing.T, name string, ports []*runtime.PortMapping) (string, *runtime.PodSandboxConfig, string) {
	t.Helper()
	cfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "net", Uid: name},
		PortMappings: ports,
		LogDirectory: t.TempDir(),
	}
	pod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	ip := st.Status.GetNetwork().GetIp()
	if !strings.HasPrefix(ip, "10.201.") {
		t.Fatalf("pod IP %q, want one from the bridge network 10.201.0.0/16", ip)
	}
	return pod.PodSandboxId, cfg, ip
}

func TestPodNetworking(t *testing.T) {
	p := newPodEnv(t)
	server, serverCfg, serverIP := p.runNetPod(t, "web", []*runtime.PortMapping{
		{Protocol: runtime.Protocol_TCP, ContainerPort: 8080, HostPort: 12080, HostIp: "127.0.0.1"},
	})
	web := p.createContainer(t, server, serverCfg, "httpd", "sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www")
	p.start(t, web)

	client, clientCfg, clientIP := p.runNetPod(t, "client", nil)
	if clientIP == serverIP {
		t.Fatalf("two pods got the same IP %s", clientIP)
	}
	curl := p.createContainer(t, client, clientCfg, "sleeper", "sleep", "1000")
	p.start(t, curl)

	t.Log("pod to pod by IP")
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		// busybox nc with a hand-written request: Debian's busybox wget needs
		// glibc NSS modules the test image does not carry.
		ex, err := p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: curl, Cmd: []string{"sh", "-c",
			"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 " + serverIP + " 8080"}, Timeout: 5})
		if err == nil && ex.ExitCode == 0 && strings.Contains(string(ex.Stdout), "\r\n\r\n") {
			body = string(ex.Stdout)
			body = body[strings.Index(body, "\r\n\r\n")+4:]
			break
		}
		if time.Now().After(deadline) {
			diag := func(id string, cmd ...string) string {
				ex, err := p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 5})
				return fmt.Sprintf("%v: exit %d %s%s %v", cmd, ex.GetExitCode(), ex.GetStdout(), ex.GetStderr(), err)
			}
			t.Fatalf("pod to pod: %v %s %s\n%s\n%s\n%s\n%s", err, ex.GetStdout(), ex.GetStderr(),
				diag(curl, "ip", "addr"), diag(curl, "ping", "-c1", "-W1", serverIP), diag(web, "netstat", "-ltn"), diag(curl, "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 "+serverIP+" 8080"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body != "hello-from-pod\n" {
		t.Fatalf("pod to pod body = %q", body)
	}

	t.Log("host port 12080 on 127.0.0.1 reaches the pod's 8080")
	resp, err := http.Get("http://127.0.0.1:12080/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello-from-pod\n" {
		t.Fatalf("host port body = %q", b)
	}

	t.Log("crictl port-forward reaches the pod's 8080 from a local port")
	pf := crictlCommand(t, p.daemon, "port-forward", server, "12081:8080")
	var pfOut bytes.Buffer
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pf.Process.Kill(); pf.Wait() }()
	deadline = time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:12081/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "hello-from-pod\n" {
				t.Fatalf("port-forward body = %q", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crictl port-forward never answered: %v\n%s", err, pfOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	pf.Process.Kill()
	pf.Wait()

	t.Log("stop detaches (CNI DEL) and is idempotent; remove leaves nothing")
	for _, id := range []string{server, client} {
		for range 2 {
			if _, err := p.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Fatal(err)
			}
		}
		if st, _ := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: id}); st.GetStatus().GetState() != runtime.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod %s after stop: %v", id, st.GetStatus().GetState())
		}
		if _, err := p.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
		if leaks := networkLeaks(t, id); len(leaks) > 0 {
			t.Errorf("pod %s left:\n%s", id, strings.Join(leaks, "\n"))
		}
	}
	if _, err := http.Get("http://127.0.0.1:12080/"); err == nil {
		t.Error("host port still answers after the pod was removed")
	}
}

func TestDefaultNetwork(t *testing.T) {
	dir := t.TempDir()
	netd := filepath.Join(dir, "net.d")
	d := startDaemon(t, e2eenv.DaemonOptions{Dir: dir, CNIConfDir: netd, DefaultNetwork: true})
	t.Cleanup(func() { exec.Command("ip", "link", "delete", "berth0").Run() })
	c := runtimeClient(t, d)
	if !strings.Contains(d.Log(), "wrote berth's default bridge network") {
		t.Error("the daemon did not say it wrote the default network")
	}
	if net := conditions(t, c)[runtime.NetworkReady]; !net.GetStatus() {
		t.Fatalf("NetworkReady with the default network = %+v", net)
	}
	run := func(name string) (string, string) {
		resp, err := c.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{
			Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "default-net", Uid: name}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId})
		})
		st, err := c.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
		if err != nil {
			t.Fatal(err)
		}
		return resp.PodSandboxId, st.Status.Network.Ip
	}
	first, ip := run("first")
	if !strings.HasPrefix(ip, "10.88.") {
		t.Fatalf("pod IP %q, want one from 10.88.0.0/16", ip)
	}
	if _, err := c.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: first}); err != nil {
		t.Fatal(err)
	}
	t.Log("kubelet assigns a pod CIDR (before it runs pods): the default network follows it")
	if _, err := c.UpdateRuntimeConfig(t.Context(), &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{
		NetworkConfig: &runtime.NetworkConfig{PodCidr: "10.99.7.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	if _, ip := run("second"); !strings.HasPrefix(ip, "10.99.7.") {
		t.Fatalf("pod IP after UpdateRuntimeConfig %q, want one from 10.99.7.0/24", ip)
	}
}

// TestPodNetworkStatsAndMetrics: a pod on the bridge network reports its
// eth0 counters in PodSandboxStats and as container_network_* series, next
// to its containers' cAdvisor series, each with the labels its descriptor
// names.
func TestPodNetworkStatsAndMetrics(t *testing.T) {
	p := newPodEnv(t)
	pod, cfg, _ := p.runNetPod(t, "metrics", nil)
	resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "limited"},
			Image:    &runtime.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "1000"},
			Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 512, MemoryLimitInBytes: 64 << 20,
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, resp.ContainerId)
	// Traffic out of eth0 (the gateway answers or not; the packets count).
	p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: resp.ContainerId, Cmd: []string{"ping", "-c", "2", "-W", "1", "10.201.0.1"}, Timeout: 10})

	st, err := p.runtime.PodSandboxStats(t.Context(), &runtime.PodSandboxStatsRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	net := st.Stats.GetLinux().GetNetwork().GetDefaultInterface()
	if net.GetName() != "eth0" || net.GetTxBytes().GetValue() == 0 {
		t.Errorf("pod network stats: %v", st.Stats.GetLinux().GetNetwork())
	}

	descs, err := p.runtime.ListMetricDescriptors(t.Context(), &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]int{}
	for _, d := range descs.Descriptors {
		labels[d.Name] = len(d.LabelKeys)
	}
	metrics, err := p.runtime.ListPodSandboxMetrics(t.Context(), &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]uint64{}
	for _, pm := range metrics.PodMetrics {
		if pm.PodSandboxId != pod {
			continue
		}
		all := pm.Metrics
		for _, cm := range pm.ContainerMetrics {
			all = append(all, cm.Metrics...)
		}
		for _, m := range all {
			if n, ok := labels[m.Name]; !ok || n != len(m.LabelValues) {
				t.Errorf("%s: %d label values, descriptor has %d (described: %v)", m.Name, len(m.LabelValues), n, ok)
			}
			key := m.Name
			if m.Name == "container_network_transmit_packets_total" {
				key += "/" + m.LabelValues[len(m.LabelValues)-1]
			}
			values[key] = m.Value.GetValue()
		}
	}
	for name, want := range map[string]uint64{
		"container_spec_cpu_quota": 20000, "container_spec_cpu_period": 100000, "container_spec_cpu_shares": 512,
		"container_spec_memory_limit_bytes": 64 << 20, "container_processes": 1,
	} {
		if got, ok := values[name]; !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", name, got, ok, want)
		}
	}
	if values["container_network_transmit_packets_total/eth0"] == 0 || values["container_memory_usage_bytes"] == 0 || values["container_threads"] == 0 {
		t.Errorf("metrics without the pod's traffic or the container's use: %v", values)
	}
}

// tbfShaping lists the token buckets shaping host devices, as "dev rate".
func tbfShaping(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("tc", "qdisc", "show").Output()
	if err != nil {
		t.Fatalf("tc qdisc show: %v", err)
	}
	var buckets []string
	for _, line := range strings.Split(string(out), "\n") {
		// qdisc tbf 1: dev vethX root refcnt 2 rate 1Mbit burst …
		f := strings.Fields(line)
		dev, rate := slices.Index(f, "dev"), slices.Index(f, "rate")
		if len(f) > 1 && f[1] == "tbf" && dev > 0 && dev+1 < len(f) && rate > 0 && rate+1 < len(f) {
			buckets = append(buckets, f[dev+1]+" "+f[rate+1])
		}
	}
	return buckets
}

// TestPodBandwidth: with the bandwidth plugin in the CNI config, a pod's
// kubernetes.io/ingress-bandwidth and egress-bandwidth annotations shape
// its traffic (token buckets at those rates on the host) until the pod is
// stopped; a malformed annotation is refused naming it.
func TestPodBandwidth(t *testing.T) {
	dir := t.TempDir()
	netd := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(netd, 0o755); err != nil {
		t.Fatal(err)
	}
	const conflist = `{"cniVersion": "1.0.0", "name": "berth-bw", "plugins": [
	  {"type": "bridge", "bridge": "berth-bw0", "isGateway": true, "ipMasq": true,
	   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.203.0.0/16"}]]}},
	  {"type": "bandwidth", "capabilities": {"bandwidth": true}}]}`
	if err := os.WriteFile(filepath.Join(netd, "10-bw.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, e2eenv.DaemonOptions{Dir: dir, CNIConfDir: netd})
	t.Cleanup(func() { exec.Command("ip", "link", "delete", "berth-bw0").Run() })
	c := runtimeClient(t, d)
	before := tbfShaping(t)
	cfg := func(name, ingress, egress string) *runtime.PodSandboxConfig {
		return &runtime.PodSandboxConfig{
			Metadata:    &runtime.PodSandboxMetadata{Name: name, Namespace: "bw", Uid: name},
			Annotations: map[string]string{"kubernetes.io/ingress-bandwidth": ingress, "kubernetes.io/egress-bandwidth": egress},
		}
	}
	pod, err := c.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg("shaped", "1M", "2M")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	})
	// Traffic into the pod is shaped on its host-side veth, traffic out of
	// it on the plugin's ifb device ("bwp…").
	added := slices.DeleteFunc(tbfShaping(t), func(b string) bool { return slices.Contains(before, b) })
	slices.Sort(added)
	if len(added) != 2 || !strings.HasPrefix(added[0], "bwp") || !strings.HasSuffix(added[0], " 2Mbit") ||
		!strings.HasPrefix(added[1], "veth") || !strings.HasSuffix(added[1], " 1Mbit") {
		t.Errorf("token buckets the pod added: %v, want 1Mbit on a veth (ingress) and 2Mbit on a bwp ifb device (egress)", added)
	}
	if _, err := c.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if left := slices.DeleteFunc(tbfShaping(t), func(b string) bool { return !slices.Contains(added, b) }); len(left) > 0 {
		t.Errorf("token buckets left after StopPodSandbox: %v", left)
	}
	_, err = c.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg("bad", "fast", "2M")})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "kubernetes.io/ingress-bandwidth") {
		t.Errorf("malformed bandwidth annotation: %v, want InvalidArgument naming it", err)
	}
}
