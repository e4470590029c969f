package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
	"github.com/berth-cri/berth/test/e2e/testimages"
)

// podEnv is a daemon with the test images available through a mirror.
type podEnv struct {
	*imageEnv
	runtime runtime.RuntimeServiceClient
	logDir  string
}

const busyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

func newPodEnv(t *testing.T) *podEnv {
	t.Helper()
	return newPodEnvWith(t, "")
}

// newPodEnvWith is newPodEnv with extra [runtime] config, and the test
// images named by extraImages in the registry as well (not pulled).
func newPodEnvWith(t *testing.T, runtimeConfig string, extraImages ...string) *podEnv {
	t.Helper()
	return newPodEnvOpts(t, e2eenv.DaemonOptions{RuntimeConfig: runtimeConfig}, extraImages...)
}

// newPodEnvOpts is newPodEnvWith with the daemon's options.
func newPodEnvOpts(t *testing.T, opts e2eenv.DaemonOptions, extraImages ...string) *podEnv {
	t.Helper()
	e := newImageEnvWith(t, testimages.MirroredHosts, opts)
	for _, img := range testImages(t) {
		for _, ref := range img.Refs {
			if ref == busyboxImage || slices.Contains(extraImages, ref) {
				push(t, e.reg, testimages.RepoPath(ref), img.Image)
			}
		}
	}
	if _, err := e.pull(t.Context(), busyboxImage, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := e2eenv.Dial(e.daemon.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &podEnv{imageEnv: e, runtime: runtime.NewRuntimeServiceClient(conn), logDir: t.TempDir()}
	t.Cleanup(func() {
		p.removeAllPods(t)
		leaks, err := e2eenv.Leaks(filepath.Dir(e.daemon.Root))
		if err != nil || len(leaks) > 0 {
			t.Errorf("leaked after removing every pod (%v):\n%s", err, strings.Join(leaks, "\n"))
		}
	})
	return p
}

// killAndRestart SIGKILLs the daemon, starts it again on the same state
// and points p's clients at it.
func (p *podEnv) killAndRestart(t *testing.T) {
	t.Helper()
	p.daemon.Kill()
	p.restart(t)
}

// restart starts the (stopped or killed) daemon again and redials.
func (p *podEnv) restart(t *testing.T) {
	t.Helper()
	if err := p.daemon.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.reconnect(t)
}

// removeAllPods leaves the host clean for the next test.
func (p *podEnv) removeAllPods(t *testing.T) {
	if _, err := e2eenv.RemoveAllPods(context.Background(), p.daemon.Socket); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func (p *podEnv) runPod(t *testing.T, name string) (string, *runtime.PodSandboxConfig) {
	t.Helper()
	cfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(p.logDir, name),
		Labels:       map[string]string{"test": t.Name()},
	}
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	return resp.PodSandboxId, cfg
}

func (p *podEnv) createContainer(t *testing.T, podID string, podCfg *runtime.PodSandboxConfig, name string, cmd ...string) string {
	t.Helper()
	resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: podID,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: name},
			Image:    &runtime.ImageSpec{Image: busyboxImage},
			Command:  cmd,
			LogPath:  name + ".log",
			Labels:   map[string]string{"c": name},
		},
		SandboxConfig: podCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	return resp.ContainerId
}

func (p *podEnv) start(t *testing.T, id string) {
	t.Helper()
	if _, err := p.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
}

func (p *podEnv) status(t *testing.T, id string) *runtime.ContainerStatus {
	t.Helper()
	resp, err := p.runtime.ContainerStatus(t.Context(), &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	return resp.Status
}

// waitLogged polls the container's log until it holds text: the container
// has got that far.
func (p *podEnv) waitLogged(t *testing.T, id, text string) {
	t.Helper()
	path := p.status(t, id).LogPath
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s did not log %q within 30s", id, text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExited polls ContainerStatus until the container has exited.
func (p *podEnv) waitExited(t *testing.T, id string) *runtime.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := p.status(t, id)
		if st.State == runtime.ContainerState_CONTAINER_EXITED {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %v after 30s", id, st.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPodLifecycle(t *testing.T) {
	p := newPodEnv(t)
	podID, podCfg := p.runPod(t, "lifecycle")

	t.Log("a container that prints and exits 0")
	done := p.createContainer(t, podID, podCfg, "done", "sh", "-c", "echo hello; echo oops >&2; hostname")
	if st := p.status(t, done); st.State != runtime.ContainerState_CONTAINER_CREATED || st.StartedAt != 0 || st.CreatedAt == 0 {
		t.Fatalf("created container status = %+v", st)
	}
	p.start(t, done)
	st := p.waitExited(t, done)
	if st.ExitCode != 0 || st.Reason != "Completed" || st.StartedAt == 0 || st.FinishedAt < st.StartedAt {
		t.Fatalf("exited status = %+v", st)
	}
	if u := st.GetUser().GetLinux(); u == nil || u.Uid != 0 || u.Gid != 0 {
		t.Errorf("user = %+v, want root", st.GetUser())
	}
	if st.Image.Image != busyboxImage || !strings.HasPrefix(st.ImageRef, "registry.k8s.io/e2e-test-images/busybox@sha256:") {
		t.Errorf("image = %q, image_ref = %q", st.Image.Image, st.ImageRef)
	}
	log, err := os.ReadFile(st.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" stdout F hello\n", " stderr F oops\n", " stdout F lifecycle\n"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	t.Log("a container that fails")
	fail := p.createContainer(t, podID, podCfg, "fail", "sh", "-c", "exit 7")
	if _, err := p.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: fail}); err != nil {
		t.Fatal(err)
	}
	if st := p.waitExited(t, fail); st.ExitCode != 7 || st.Reason != "Error" {
		t.Fatalf("failed container = %+v", st)
	}

	t.Log("a long-running container: exec, stop")
	long := p.createContainer(t, podID, podCfg, "long", "sleep", "1000")
	if _, err := p.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: long}); err != nil {
		t.Fatal(err)
	}
	if st := p.status(t, long); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("state = %v", st.State)
	}
	ex, err := p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: long, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}})
	if err != nil || string(ex.Stdout) != "out\n" || string(ex.Stderr) != "err\n" || ex.ExitCode != 3 {
		t.Fatalf("ExecSync = %+v, %v", ex, err)
	}
	ex, err = p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: long, Cmd: []string{"no-such-command"}})
	if err != nil || ex.ExitCode != 127 {
		t.Fatalf("ExecSync of a missing command = %+v, %v; want exit 127", ex, err)
	}
	_, err = p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: long, Cmd: []string{"sleep", "100"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("ExecSync timeout: err = %v", err)
	}
	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: long, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	if st := p.status(t, long); st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Fatalf("after StopContainer with timeout 0: %v, exit %d; want killed at once", st.State, st.ExitCode)
	}

	t.Log("a container that ignores SIGTERM is killed after the timeout")
	stubborn := p.createContainer(t, podID, podCfg, "stubborn", "sh", "-c", "trap '' TERM; echo ignoring TERM; while true; do sleep 1; done")
	p.start(t, stubborn)
	// A SIGTERM before the trap is set would end it at once.
	p.waitLogged(t, stubborn, "ignoring TERM")
	start := time.Now()
	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: stubborn, Timeout: 2}); err != nil {
		t.Fatal(err)
	}
	st = p.status(t, stubborn)
	if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Fatalf("after StopContainer: %v, exit %d; want exited by SIGKILL", st.State, st.ExitCode)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("stop escalated to SIGKILL after %s, before the 2s timeout", took)
	}
	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: long}); err != nil {
		t.Fatalf("second stop: %v", err)
	}

	t.Log("a container that handles SIGTERM stops at once")
	polite := p.createContainer(t, podID, podCfg, "polite", "sh", "-c", "trap 'exit 0' TERM; echo handling TERM; sleep 1000 & wait")
	if _, err := p.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: polite}); err != nil {
		t.Fatal(err)
	}
	p.waitLogged(t, polite, "handling TERM")
	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: polite, Timeout: 60}); err != nil {
		t.Fatal(err)
	}
	if st := p.status(t, polite); st.ExitCode != 0 || st.Reason != "Completed" {
		t.Fatalf("polite container = exit %d, %s", st.ExitCode, st.Reason)
	}

	list, err := p.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	if err != nil || len(list.Containers) != 5 {
		t.Fatalf("ListContainers = %v, %v", list, err)
	}
	for _, id := range []string{done, fail, long, stubborn, polite} {
		if _, err := p.runtime.RemoveContainer(t.Context(), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
}

// sharedPIDPod runs a pod whose containers share one PID namespace.
func (p *podEnv) sharedPIDPod(t *testing.T, name string) (string, *runtime.PodSandboxConfig) {
	t.Helper()
	cfg := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: name},
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD},
		}},
	}
	pod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return pod.PodSandboxId, cfg
}

func TestSharedPodPIDNamespace(t *testing.T) {
	p := newPodEnv(t)
	podID, cfg := p.sharedPIDPod(t, "shared-pid")
	var ids []string
	for i, name := range []string{"sleeper", "looker"} {
		resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
			PodSandboxId: podID, SandboxConfig: cfg,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: name},
				Image:    &runtime.ImageSpec{Image: busyboxImage},
				Command:  []string{"sleep", fmt.Sprint(1001 + i)},
				Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD},
				}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		p.start(t, resp.ContainerId)
		ids = append(ids, resp.ContainerId)
	}
	ex, err := p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: ids[1], Cmd: []string{"sh", "-c", "ps -o args; cat /proc/1/cmdline"}})
	if err != nil {
		t.Fatal(err)
	}
	out := string(ex.Stdout)
	if !strings.Contains(out, "sleep 1001") || !strings.Contains(out, "sleep 1002") {
		t.Errorf("containers do not see each other's processes:\n%s", out)
	}
	if !strings.Contains(out, "berth-pause") {
		t.Errorf("PID 1 of the pod is not berth-pause:\n%s", out)
	}
}

func TestContainerAndPodStats(t *testing.T) {
	p := newPodEnv(t)
	podID, podCfg := p.runPod(t, "stats")
	busy := p.createContainer(t, podID, podCfg, "busy", "sh", "-c", "dd if=/dev/zero of=/tmp/blob bs=1M count=8; while true; do :; done")
	idle := p.createContainer(t, podID, podCfg, "idle", "sleep", "1000")
	p.start(t, busy)

	deadline := time.Now().Add(20 * time.Second)
	var st *runtime.ContainerStats
	for {
		resp, err := p.runtime.ContainerStats(t.Context(), &runtime.ContainerStatsRequest{ContainerId: busy})
		if err != nil {
			t.Fatal(err)
		}
		st = resp.Stats
		if st.GetCpu().GetUsageNanoCores().GetValue() > 0 && st.GetWritableLayer().GetUsedBytes().GetValue() >= 8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats of a busy container that wrote 8 MiB = %v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Memory.GetWorkingSetBytes().GetValue() == 0 || st.Cpu.GetUsageCoreNanoSeconds().GetValue() == 0 || st.Attributes.Metadata.Name != "busy" {
		t.Errorf("busy container stats = %v", st)
	}
	t.Logf("busy: %.2f cores, working set %d B, writable layer %d B",
		float64(st.Cpu.UsageNanoCores.Value)/1e9, st.Memory.WorkingSetBytes.Value, st.WritableLayer.UsedBytes.Value)

	list, err := p.runtime.ListContainerStats(t.Context(), &runtime.ListContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: podID}})
	if err != nil || len(list.Stats) != 2 {
		t.Fatalf("ListContainerStats = %v, %v", list, err)
	}
	for _, cs := range list.Stats {
		if cs.Attributes.Id == idle && (cs.Cpu.GetUsageCoreNanoSeconds() != nil || cs.Cpu.Timestamp == 0) {
			t.Errorf("a created, never started container reports CPU use: %v", cs)
		}
	}
	pod, err := p.runtime.PodSandboxStats(t.Context(), &runtime.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	if lx := pod.Stats.GetLinux(); len(lx.GetContainers()) != 2 || lx.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || lx.GetProcess().GetProcessCount().GetValue() == 0 {
		t.Errorf("pod stats = %v", pod.Stats)
	}
}

// TestPauseDiesWithItsMonitor kills the monitor of a pod with a shared PID
// namespace: its pause process must not linger as an orphan.
func TestPauseDiesWithItsMonitor(t *testing.T) {
	p := newPodEnv(t)
	podID, _ := p.sharedPIDPod(t, "pause-orphan")
	st, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	info := verbosePids(t, st.Info)
	if info.PausePid == 0 {
		t.Fatalf("no pause pid in verbose info %s", st.Info["info"])
	}
	if err := syscall.Kill(info.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(info.PausePid, 0) == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", info.PausePid)); strings.Contains(string(b), ") Z ") {
			break // exited, waiting for init to reap it
		}
		if time.Now().After(deadline) {
			t.Fatalf("pause process %d outlived its monitor %d", info.PausePid, info.Pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPauseContainerMode: with runtime.pause_container, a pod runs the
// sandbox image (pulled on first use) as an infra container that is the
// init of the pod's shared PID namespace and its reported process; it
// survives a daemon SIGKILL, dies with StopPodSandbox, and RemovePodSandbox
// leaves nothing (newPodEnv's cleanup counts mounts and processes).
func TestPauseContainerMode(t *testing.T) {
	const pauseImage = "registry.k8s.io/pause:3.10"
	p := newPodEnvWith(t, "pause_container = true", pauseImage)
	podID, cfg := p.sharedPIDPod(t, "classic")
	if _, err := p.images.ImageStatus(t.Context(), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: pauseImage}}); err != nil {
		t.Fatal(err)
	}
	if st := p.imageEnv.status(t, pauseImage); st == nil || !st.Pinned {
		t.Fatalf("sandbox image after RunPodSandbox: %+v", st)
	}
	sb, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	pids := verbosePids(t, sb.Info)
	if pids.Pid != pids.PausePid {
		t.Fatalf("sandbox pid %d is not the pause container's %d", pids.Pid, pids.PausePid)
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids.Pid)); string(cmd) != "/pause\x00" {
		t.Fatalf("sandbox process runs %q, want the sandbox image's /pause", cmd)
	}
	resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: podID, SandboxConfig: cfg,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "looker"},
			Image:    &runtime.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "1000"},
			Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
				NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, resp.ContainerId)
	ex, err := p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: resp.ContainerId, Cmd: []string{"cat", "/proc/1/cmdline"}})
	if err != nil || string(ex.Stdout) != "/pause\x00" {
		t.Fatalf("PID 1 of the pod runs %q (%v), want /pause", ex.GetStdout(), err)
	}

	p.killAndRestart(t)
	rt := p.runtime
	st, err := rt.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || st.Status.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod after daemon restart: %v, %v", st.GetStatus().GetState(), err)
	}
	if syscall.Kill(pids.Pid, 0) != nil {
		t.Fatal("pause container did not survive the daemon's SIGKILL")
	}
	if _, err := rt.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids.Pid)); string(cmd) == "/pause\x00" {
		t.Fatal("pause container still running after StopPodSandbox")
	}
	if _, err := rt.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(p.daemon.State, "pause")); len(entries) != 0 {
		t.Errorf("pause bundles left: %v", entries)
	}

	// A pod whose pause container dies is not ready any more (kubelet
	// recreates it), as with containerd.
	second, _ := p.sharedPIDPod(t, "classic-2")
	sb2, err := rt.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: second, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(verbosePids(t, sb2.Info).PausePid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := rt.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: second})
		if err == nil && st.Status.State == runtime.PodSandboxState_SANDBOX_NOTREADY {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod still %v 10s after its pause container was killed (%v)", st.GetStatus().GetState(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
