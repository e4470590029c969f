package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
