package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// crictl runs the crictl binary (built into the e2e cache) against d.
func crictl(t *testing.T, d *e2eenv.Daemon, args ...string) string {
	t.Helper()
	bin, err := e2eenv.EnsureCrictl(t.Context(), e2eCache())
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "unix://" + d.Socket
	full := append([]string{"--runtime-endpoint", endpoint, "--image-endpoint", endpoint}, args...)
	out, err := exec.CommandContext(t.Context(), bin, full...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("crictl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

func TestCrictlImageCommands(t *testing.T) {
	e := newImageEnv(t, []string{"docker.io"}, "")
	img := testImage(t, "")
	push(t, e.reg, "library/busybox:1.37", img)
	id, _ := img.ConfigName()
	short := strings.TrimPrefix(id.String(), "sha256:")[:13]

	if out := crictl(t, e.daemon, "version"); !strings.Contains(out, "RuntimeName:  berth") {
		t.Fatalf("crictl version:\n%s", out)
	}
	if out := crictl(t, e.daemon, "pull", "busybox:1.37"); !strings.Contains(out, id.String()) {
		t.Fatalf("crictl pull:\n%s", out)
	}
	out := crictl(t, e.daemon, "images")
	if !strings.Contains(out, "docker.io/library/busybox") || !strings.Contains(out, "1.37") || !strings.Contains(out, short) {
		t.Fatalf("crictl images:\n%s", out)
	}
	if out := crictl(t, e.daemon, "inspecti", short); !strings.Contains(out, `"docker.io/library/busybox:1.37"`) || !strings.Contains(out, "chainID") {
		t.Fatalf("crictl inspecti by short ID:\n%s", out)
	}
	if out := crictl(t, e.daemon, "imagefsinfo"); !strings.Contains(out, "usedBytes") {
		t.Fatalf("crictl imagefsinfo:\n%s", out)
	}
	crictl(t, e.daemon, "rmi", "busybox:1.37")
	if out := crictl(t, e.daemon, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("crictl images after rmi:\n%s", out)
	}
}

// TestCrictlPodCommands drives a pod through crictl as an operator would:
// runp, create, start, ps, inspect, logs, exec, stop, rm, stopp, rmp.
func TestCrictlPodCommands(t *testing.T) {
	p := newPodEnv(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	podJSON := filepath.Join(dir, "pod.json")
	ctrJSON := filepath.Join(dir, "ctr.json")
	os.WriteFile(podJSON, []byte(`{"metadata":{"name":"crictl-demo","namespace":"default","uid":"crictl-1"},"log_directory":"`+logDir+`"}`), 0o644)
	os.WriteFile(ctrJSON, []byte(`{"metadata":{"name":"hello"},"image":{"image":"`+busyboxImage+`"},"command":["sh","-c","echo hello from berth; sleep 1000"],"log_path":"hello.log"}`), 0o644)

	pod := strings.TrimSpace(crictl(t, p.daemon, "runp", podJSON))
	ctr := strings.TrimSpace(crictl(t, p.daemon, "create", pod, ctrJSON, podJSON))
	crictl(t, p.daemon, "start", ctr)
	if out := crictl(t, p.daemon, "ps"); !strings.Contains(out, ctr[:13]) || !strings.Contains(out, "Running") {
		t.Fatalf("crictl ps:\n%s", out)
	}
	if out := crictl(t, p.daemon, "inspect", ctr); !strings.Contains(out, `"state": "CONTAINER_RUNNING"`) || !strings.Contains(out, "runtimeSpec") {
		t.Fatalf("crictl inspect:\n%s", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(crictl(t, p.daemon, "logs", ctr), "hello from berth") {
		if time.Now().After(deadline) {
			t.Fatal("crictl logs never showed the container's output")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := crictl(t, p.daemon, "exec", "--sync", ctr, "cat", "/etc/hostname"); strings.TrimSpace(out) == "" {
		t.Fatalf("crictl exec printed nothing")
	}
	// Without --sync, crictl exec goes through the streaming server.
	if out := crictl(t, p.daemon, "exec", ctr, "sh", "-c", "echo streamed; echo to-stderr >&2"); !strings.Contains(out, "streamed") {
		t.Fatalf("crictl exec through the streaming server printed %q", out)
	}
	crictl(t, p.daemon, "stop", "--timeout", "0", ctr)
	if out := crictl(t, p.daemon, "ps", "-a", "-q", "--state", "exited"); !strings.Contains(out, ctr) {
		t.Fatalf("crictl ps --state exited:\n%s", out)
	}
	crictl(t, p.daemon, "rm", ctr)
	crictl(t, p.daemon, "stopp", pod)
	crictl(t, p.daemon, "rmp", pod)
	if out := crictl(t, p.daemon, "pods", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("crictl pods after rmp:\n%s", out)
	}
}
