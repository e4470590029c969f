package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// reconnect points the env's clients at the restarted daemon.
func (p *podEnv) reconnect(t *testing.T) {
	t.Helper()
	conn, err := e2eenv.Dial(p.daemon.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.runtime = runtime.NewRuntimeServiceClient(conn)
	p.images = runtime.NewImageServiceClient(conn)
}

func logLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func TestSIGKILLDaemonKeepsContainersRunning(t *testing.T) {
	p := newPodEnv(t)
	podID, podCfg := p.runPod(t, "survivor")
	ticker := p.createContainer(t, podID, podCfg, "ticker", "sh", "-c", "while true; do echo tick; sleep 0.1; done")
	p.start(t, ticker)
	quitter := p.createContainer(t, podID, podCfg, "quitter", "sh", "-c", "read x < /dev/shm/go 2>/dev/null; while [ ! -e /dev/shm/go ]; do sleep 0.05; done; exit 42")
	p.start(t, quitter)
	created := p.createContainer(t, podID, podCfg, "created", "true")
	before := p.status(t, ticker)
	pidBefore := mainPid(t, p, ticker)

	t.Log("SIGKILL the daemon while the pod runs")
	p.daemon.Kill()
	t.Log("while it is down: one container exits with code 42")
	shm := filepath.Join(p.daemon.State, "pods", podID, "shm", "go")
	if err := os.WriteFile(shm, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	exitFile := filepath.Join(p.daemon.State, "containers", quitter, "exit.json")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(exitFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the monitor recorded no exit while the daemon was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	linesWhileDown := logLines(t, before.LogPath)

	if err := p.daemon.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.reconnect(t)

	list, err := p.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{})
	if err != nil || len(list.Containers) != 3 {
		t.Fatalf("after restart: %v, %v", list, err)
	}
	if st := p.status(t, ticker); st.State != runtime.ContainerState_CONTAINER_RUNNING || st.StartedAt != before.StartedAt {
		t.Fatalf("ticker after restart = %v (started %d, was %d)", st.State, st.StartedAt, before.StartedAt)
	}
	if pid := mainPid(t, p, ticker); pid != pidBefore || syscall.Kill(pid, 0) != nil {
		t.Fatalf("ticker's process changed or died: %d → %d", pidBefore, pid)
	}
	st := p.status(t, quitter)
	if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 42 || st.FinishedAt == 0 || st.Reason != "Error" {
		t.Fatalf("container that exited while the daemon was down = %v, code %d, finished %d, %q", st.State, st.ExitCode, st.FinishedAt, st.Reason)
	}
	if st := p.status(t, created); st.State != runtime.ContainerState_CONTAINER_CREATED {
		t.Fatalf("created container after restart = %v", st.State)
	}
	sb, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || sb.Status.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod after restart = %v, %v", sb, err)
	}
	t.Log("the ticker kept logging, and the restarted daemon still controls it")
	deadline = time.Now().Add(10 * time.Second)
	for logLines(t, before.LogPath) <= linesWhileDown {
		if time.Now().After(deadline) {
			t.Fatal("no new log lines after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: ticker}); err != nil {
		t.Fatal(err)
	}
	p.start(t, created)
}

// mainPid reads the container's pid from verbose ContainerStatus.
func mainPid(t *testing.T, p *podEnv, id string) int {
	t.Helper()
	resp, err := p.runtime.ContainerStatus(t.Context(), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return verbosePids(t, resp.Info).Pid
}

// verbosePids decodes the pids of a verbose status's info: the container's
// process, or for a pod its monitor and pause process.
func verbosePids(t *testing.T, info map[string]string) struct{ Pid, PausePid int } {
	t.Helper()
	var pids struct{ Pid, PausePid int }
	if err := json.Unmarshal([]byte(info["info"]), &pids); err != nil || pids.Pid <= 0 {
		t.Fatalf("no pid in verbose info %s: %v", info["info"], err)
	}
	return pids
}

func TestKilledMonitorStopsItsContainers(t *testing.T) {
	p := newPodEnv(t)
	podID, podCfg := p.runPod(t, "orphaned")
	c := p.createContainer(t, podID, podCfg, "sleeper", "sleep", "1000")
	p.start(t, c)
	pid := mainPid(t, p, c)

	sb, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	monitorPid := verbosePids(t, sb.Info).Pid
	t.Logf("SIGKILL the pod's monitor (pid %d)", monitorPid)
	if err := syscall.Kill(monitorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := p.waitExited(t, c)
	if st.Reason != "MonitorDied" || st.Message == "" {
		t.Fatalf("container of a dead monitor: reason %q, message %q", st.Reason, st.Message)
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("container process %d still runs unmonitored", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHalfMadePodIsCleanedUpOnRestart(t *testing.T) {
	p := newPodEnv(t)
	if err := p.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Log("a pod directory with pinned namespaces (a user namespace too) and /dev/shm but no record, as a crash mid-RunPodSandbox leaves")
	orphan := filepath.Join(p.daemon.State, "pods", strings.Repeat("ab", 32))
	mapping := []*runtime.IDMapping{{ContainerId: 0, HostId: 400000, Length: 65536}}
	if _, err := sandbox.Create(sandbox.Spec{Dir: orphan, Config: &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "orphan"},
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
			UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: mapping, Gids: mapping},
		}}},
	}}); err != nil {
		t.Fatal(err)
	}
	if leaks, _ := e2eenv.Leaks(orphan); len(leaks) != 5 {
		t.Fatalf("the simulated half-made pod has mounts %v, want 5 (user, net, ipc, uts, shm)", leaks)
	}
	if err := p.daemon.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.reconnect(t)
	if leaks, _ := e2eenv.Leaks(orphan); len(leaks) > 0 {
		t.Fatalf("half-made pod not cleaned up: %v", leaks)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("half-made pod directory still there: %v", err)
	}
	if !strings.Contains(p.daemon.Log(), "removed half-made pod sandbox") {
		t.Error("recovery did not log the cleanup")
	}
}

// TestSIGKILLAtRandomMoments: the daemon is killed at a random moment while
// pods (some in user namespaces) and containers are being made and
// removed, several times over — with pinned namespaces, and in the classic
// pause-container mode.
// After each restart every record is consistent (each container's pod is
// listed) and everything can be removed; in the end nothing is left: no
// mount, monitor, state directory, veth, IP reservation or CNI rule.
func TestSIGKILLAtRandomMoments(t *testing.T) {
	t.Run("pinned", func(t *testing.T) { sigkillAtRandomMoments(t, newPodEnv(t)) })
	t.Run("pause containers", func(t *testing.T) {
		sigkillAtRandomMoments(t, newPodEnvWith(t, "pause_container = true", "registry.k8s.io/pause:3.10"))
	})
}

func sigkillAtRandomMoments(t *testing.T, p *podEnv) {
	before := hostNetNow(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	const rounds, workers = 6, 3
	for round := range rounds {
		var killed atomic.Bool
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := 0; ; i++ {
					name := fmt.Sprintf("chaos-%d-%d-%d", round, w, i)
					cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "chaos", Uid: name}}
					handler := ""
					if w == 0 {
						// One worker's pods have user namespaces (on crun).
						mapping := []*runtime.IDMapping{{ContainerId: 0, HostId: 500000, Length: 65536}}
						cfg.Linux = &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
							NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER, UsernsOptions: &runtime.UserNamespace{
								Mode: runtime.NamespaceMode_POD, Uids: mapping, Gids: mapping,
							}},
						}}
						handler = "crun"
					}
					err := p.podRoundTripIn(t, cfg, handler)
					if err != nil {
						if !killed.Load() {
							t.Errorf("round %d worker %d before the kill: %v", round, w, err)
						} else {
							// Which call the kill interrupted, for the record.
							t.Logf("round %d worker %d: killed in %s", round, w, strings.SplitN(err.Error(), ":", 2)[0])
						}
						return
					}
				}
			})
		}
		// Not synchronisation: the moment of the kill is what is random.
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		killed.Store(true)
		p.daemon.Kill()
		wg.Wait()
		p.restart(t)

		pods, err := p.runtime.ListPodSandbox(t.Context(), &runtime.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, sb := range pods.Items {
			listed[sb.Id] = true
		}
		ctrs, err := p.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range ctrs.Containers {
			if !listed[c.PodSandboxId] {
				t.Errorf("round %d: container %s of pod %s, which is not listed", round, c.Id, c.PodSandboxId)
			}
		}
		t.Logf("round %d: %d pods and %d containers after the restart", round, len(pods.Items), len(ctrs.Containers))
		// A stopped pod runs nothing, whatever the crash kept from its
		// records (a container started, not recorded so).
		for _, sb := range pods.Items {
			if _, err := p.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
				t.Errorf("round %d: stop pod %s: %v", round, sb.Id, err)
			}
		}
		if running := runtimeRunning(t, p.daemon.State); len(running) > 0 {
			t.Errorf("round %d: containers still running in the runtime after every pod was stopped: %v", round, running)
		}
		for _, sb := range pods.Items {
			if _, err := p.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
				monitorLog, _ := os.ReadFile(filepath.Join(p.daemon.State, "pods", sb.Id, "monitor.log"))
				var lines []string
				for _, l := range strings.Split(p.daemon.Log(), "\n") {
					if strings.Contains(l, sb.Id[:12]) || strings.Contains(l, "monitor") {
						lines = append(lines, l)
					}
				}
				t.Errorf("round %d: remove pod %s: %v\nits monitor's log:\n%s\nthe daemon's log about it:\n%s", round, sb.Id, err, monitorLog, strings.Join(lines, "\n"))
			}
		}
		if leaks, err := e2eenv.Leaks(filepath.Dir(p.daemon.Root)); err != nil || len(leaks) > 0 {
			t.Fatalf("round %d: leaked (%v):\n%s", round, err, strings.Join(leaks, "\n"))
		}
	}
	p.checkNothingLeft(t, before)
}

// runtimeRunning lists the containers each handler's runtime (its state in
// <state>/runtimes/<handler>) has running.
func runtimeRunning(t *testing.T, state string) []string {
	t.Helper()
	roots, _ := filepath.Glob(filepath.Join(state, "runtimes", "*"))
	var running []string
	for _, root := range roots {
		bin := filepath.Base(root)
		if bin == "runc-upstream" {
			bin = "/usr/local/libexec/berth/runc"
		}
		out := runtimeList(t, bin, root)
		var list []struct{ ID, Status string }
		if len(bytes.TrimSpace(out)) > 0 && string(bytes.TrimSpace(out)) != "null" {
			if err := json.Unmarshal(out, &list); err != nil {
				t.Fatalf("%s list: %v: %s", bin, err, out)
			}
		}
		for _, c := range list {
			if c.Status == "running" || c.Status == "created" {
				running = append(running, filepath.Base(root)+"/"+c.ID+" "+c.Status)
			}
		}
	}
	return running
}

// runtimeList runs the runtime's list. Neither runc 1.1 nor crun can list
// while a container's state is deleted, as the monitor deletes an exited
// container's: each exits on the file gone under it (ENOENT, in Go's words
// or C's). Such a listing is taken again; any other failure fails the test.
func runtimeList(t *testing.T, bin, root string) []byte {
	t.Helper()
	for attempt := 1; ; attempt++ {
		cmd := exec.Command(bin, "--root", root, "list", "--format", "json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			return out
		}
		vanished := strings.Contains(strings.ToLower(stderr.String()), syscall.ENOENT.Error())
		if !vanished || attempt == 10 {
			t.Fatalf("%s list: %v: %s", bin, err, stderr.Bytes())
		}
	}
}

// TestUnrecordedStartIsRecorded: a daemon that dies in StartContainer after
// the monitor started the container but before the record said so leaves
// a running container recorded as created. Made here by starting it
// through the pod's monitor directly: a repeated StartContainer succeeds,
// a restart records the start, a StopContainer really stops it.
func TestUnrecordedStartIsRecorded(t *testing.T) {
	p := newPodEnv(t)
	podID, podCfg := p.runPod(t, "unrecorded")
	sb, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ MonitorSocket string }
	if err := json.Unmarshal([]byte(sb.Info["info"]), &info); err != nil || info.MonitorSocket == "" {
		t.Fatalf("no monitor socket in %s: %v", sb.Info["info"], err)
	}
	startBehindDaemon := func(name string) string {
		id := p.createContainer(t, podID, podCfg, name, "sleep", "1000")
		bundle := filepath.Join(p.daemon.State, "containers", id)
		if _, err := (monitor.Client{Socket: info.MonitorSocket}).Start(t.Context(), id, bundle, monitor.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		if st := p.status(t, id); st.State != runtime.ContainerState_CONTAINER_CREATED {
			t.Fatalf("%s: %v before the test's point", name, st.State)
		}
		return id
	}
	retried, restarted, stopped := startBehindDaemon("retried"), startBehindDaemon("restarted"), startBehindDaemon("stopped")

	p.start(t, retried)
	if st := p.status(t, retried); st.State != runtime.ContainerState_CONTAINER_RUNNING || st.StartedAt == 0 {
		t.Errorf("after a repeated StartContainer: %v started at %d, want running", st.State, st.StartedAt)
	}

	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: stopped}); err != nil {
		t.Fatal(err)
	}
	if st := p.status(t, stopped); st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("after StopContainer: %v, want exited", st.State)
	}
	for _, r := range runtimeRunning(t, p.daemon.State) {
		if strings.Contains(r, stopped) {
			t.Errorf("the runtime still runs the stopped container: %s", r)
		}
	}

	p.killAndRestart(t)
	if st := p.status(t, restarted); st.State != runtime.ContainerState_CONTAINER_RUNNING || mainPid(t, p, restarted) <= 0 {
		t.Errorf("after a restart: %v, want running with its pid", st.State)
	}
}
