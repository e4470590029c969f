package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// warnOrError matches a log line at WARN or ERROR in slog's text format.
var warnOrError = regexp.MustCompile(`(?m)^.*level=(WARN|ERROR).*$`)

// TestNormalLifecycleLogsNoWarnings: a warning must mean something is
// wrong. A lifecycle as kubelet drives it — a networked pod, a container
// that runs, one that exits on its own, exec, crictl exec, stats, a graceful
// restart of berth, stop and removal — logs nothing at WARN or ERROR, in the
// daemon's log or the pod monitor's.
func TestNormalLifecycleLogsNoWarnings(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg, _ := p.runNetPod(t, "quiet", nil)
	monitorLog := filepath.Join(p.daemon.State, "pods", pod, "monitor.log")

	long := p.createContainer(t, pod, podCfg, "long", "sleep", "1000")
	p.start(t, long)
	short := p.createContainer(t, pod, podCfg, "short", "sh", "-c", "echo done")
	p.start(t, short)
	if out, code := p.exec(t, long, "echo", "hello"); code != 0 || strings.TrimSpace(out) != "hello" {
		t.Fatalf("exec: %q, exit %d", out, code)
	}
	if out, err := crictlCommand(t, p.daemon, "exec", long, "true").CombinedOutput(); err != nil {
		t.Fatalf("crictl exec: %v: %s", err, out)
	}
	if _, err := p.runtime.ContainerStats(t.Context(), &runtime.ContainerStatsRequest{ContainerId: long}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.runtime.PodSandboxStats(t.Context(), &runtime.PodSandboxStatsRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	p.waitExited(t, short)

	if err := p.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	p.restart(t)

	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: long, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{long, short} {
		if _, err := p.runtime.RemoveContainer(t.Context(), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	monitorLines, err := os.ReadFile(monitorLog)
	if err != nil {
		t.Fatalf("monitor log: %v", err)
	}
	if _, err := p.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	// A graceful stop waits for the daemon's watchers, the pod's among
	// them: whatever they log about the monitor's end is in the log now.
	if err := p.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	defer p.restart(t) // for the cleanups, which talk to it
	for _, l := range warnOrError.FindAllString(p.daemon.Log(), -1) {
		t.Errorf("daemon: %s", l)
	}
	for _, l := range warnOrError.FindAllString(string(monitorLines), -1) {
		t.Errorf("monitor: %s", l)
	}
}
