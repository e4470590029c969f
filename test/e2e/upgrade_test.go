package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// upgradeFrom is the release the upgrade test starts from: v0.1.0 (cd6599a), the
// end of wave 1 (the state every issue of wave 2 measured against). A new
// berth must take over its pods, containers and monitors.
const upgradeFrom = "cd6599aa75501da5ee2134b3e0f4aa50f17d487e"

// previousBerth builds berth and berth-monitor at rev from this checkout's
// git history into the e2e cache, once per revision, and returns their
// directory.
func previousBerth(t *testing.T, rev string) string {
	t.Helper()
	dir := filepath.Join(e2eCache(), "upgrade-from", rev)
	if _, err := os.Stat(filepath.Join(dir, "berth-monitor")); err == nil {
		return dir
	}
	if out, err := exec.Command("git", "-C", repoRoot(t), "cat-file", "-e", rev+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("this checkout lacks commit %s (a shallow clone?): the upgrade test builds the previous release from the history: %v %s", rev, err, out)
	}
	src := t.TempDir()
	archive := exec.Command("sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", repoRoot(t), rev, src))
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", rev, err, out)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	for _, b := range []struct {
		name, pkg string
		cgo       string
	}{{"berth", "./cmd/berth", "1"}, {"berth-monitor", "./cmd/berth-monitor", "0"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(tmp, b.name), b.pkg)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo, "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s at %s: %v\n%s", b.name, rev, err, out)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUpgradeFromPreviousRelease: pods and containers made by the previous
// release's daemon — under its monitors, which keep running the old binary
// — are taken over by this one after a restart onto the new binary: their
// status and logs, exec, stop and removal work, nothing is left, and new
// pods run beside them.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	old := previousBerth(t, upgradeFrom)
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	reg, err := e2eenv.StartRegistry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if err := e2eenv.WriteHostsDir(hosts, reg.Host, []string{"registry.k8s.io"}); err != nil {
		t.Fatal(err)
	}
	for _, img := range testImages(t) {
		for _, ref := range img.Refs {
			if ref == busyboxImage {
				push(t, reg, "e2e-test-images/busybox:1.29-2", img.Image)
			}
		}
	}
	d := startDaemon(t, e2eenv.DaemonOptions{Binary: filepath.Join(old, "berth"), Dir: dir, RegistryConfigPath: hosts, NoNRITable: true})
	p := &podEnv{imageEnv: &imageEnv{reg: reg, daemon: d}, logDir: t.TempDir()}
	p.reconnect(t)
	t.Cleanup(func() { p.removeAllPods(t) })
	if _, err := p.pull(t.Context(), busyboxImage, nil); err != nil {
		t.Fatal(err)
	}
	pod, podCfg := p.runPod(t, "from-old")
	running := p.createContainer(t, pod, podCfg, "running", "sh", "-c", "echo from the old release; exec sleep 1000")
	p.start(t, running)
	exited := p.createContainer(t, pod, podCfg, "exited", "sh", "-c", "exit 7")
	p.start(t, exited)
	p.waitExited(t, exited)
	p.waitLogged(t, running, "from the old release")
	v, err := p.runtime.Version(t.Context(), &runtime.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("made by berth %s", v.RuntimeVersion)

	t.Log("upgrade: SIGTERM, then the new binary on the same state")
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d.SetBinary(berthBinary)
	if err := d.AddNRITable(); err != nil { // its NRI socket, not the host's
		t.Fatal(err)
	}
	p.restart(t)
	if v2, _ := p.runtime.Version(t.Context(), &runtime.VersionRequest{}); v2.GetRuntimeVersion() == v.RuntimeVersion {
		t.Fatalf("still the old daemon (%s)", v.RuntimeVersion)
	}

	// The daemon knows the old monitor speaks protocol 1 (it predates
	// versioning) and says so.
	if log := d.Log(); !strings.Contains(log, "pod monitor started by an older berth") || !strings.Contains(log, "pod="+pod+" ") || !strings.Contains(log, "protocol=1 ") {
		t.Error("the new daemon did not recognise the old monitor's protocol")
	}
	if st := p.status(t, running); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("running container after the upgrade: %s", st.State)
	}
	if st := p.status(t, exited); st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 || st.Reason != "Error" {
		t.Errorf("exited container after the upgrade: %s, exit %d, %s", st.State, st.ExitCode, st.Reason)
	}
	if out, code := p.exec(t, running, "echo", "exec through the old monitor"); code != 0 || !strings.Contains(out, "exec through the old monitor") {
		t.Errorf("exec after the upgrade: %d %q", code, out)
	}
	logs, err := os.ReadFile(filepath.Join(podCfg.LogDirectory, "running.log"))
	if err != nil || !strings.Contains(string(logs), "from the old release") {
		t.Errorf("log after the upgrade: %q, %v", logs, err)
	}
	// New work beside the old.
	newPod, newCfg := p.runPod(t, "from-new")
	p.start(t, p.createContainer(t, newPod, newCfg, "c", "sleep", "1000"))

	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: running, Timeout: 1}); err != nil {
		t.Fatalf("stop after the upgrade: %v", err)
	}
	if st := p.status(t, running); st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("stopped container: %s", st.State)
	}
	for _, id := range []string{running, exited} {
		if _, err := p.runtime.RemoveContainer(t.Context(), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("remove after the upgrade: %v", err)
		}
	}
	p.stopAndRemovePod(t, pod)
	p.stopAndRemovePod(t, newPod)
	if leaks, err := e2eenv.Leaks(filepath.Dir(d.Root)); err != nil || len(leaks) > 0 {
		t.Errorf("left after removing every pod (%v):\n%s", err, strings.Join(leaks, "\n"))
	}
}
