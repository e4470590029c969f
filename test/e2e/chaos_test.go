package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// TestChaos drives berth as a busy kubelet does: workers run random CRI
// calls on pods of their own — run, create and start, stop, remove, exec,
// update, status, stop pod, remove pod — with a quarter of the calls cut
// off by random short deadlines; in the second variant the daemon is also
// SIGKILLed at random moments and restarted. After each round (the daemon
// restarted: gracefully, which lets every call finish, or after the kill)
// the record agrees with the host: a container recorded running runs, with
// the recorded PID; one recorded otherwise does not; no container process
// runs that the record does not know. In the end every pod removes
// cleanly and nothing of the test is left: no container process, mount,
// monitor, runtime state, netns, cgroup, veth, IP reservation or CNI rule;
// and no call answered Internal or Unknown.
//
// The seed is logged; BERTH_CHAOS_SEED replays a run.
func TestChaos(t *testing.T) {
	t.Run("cut-off calls", func(t *testing.T) {
		chaos(t, chaosOptions{rounds: 2, workers: 4, opsPerWorker: 40})
	})
	t.Run("cut-off calls and SIGKILL", func(t *testing.T) {
		chaos(t, chaosOptions{rounds: 4, workers: 3, opsPerWorker: 40, kill: true})
	})
}

type chaosOptions struct {
	rounds, workers, opsPerWorker int
	// kill SIGKILLs the daemon at a random moment of each round.
	kill bool
}

// chaosRun is one test's shared state.
type chaosRun struct {
	p            *podEnv
	seed         uint64
	marker       string // an argument every container process carries
	cgroupParent string
	logDir       string
	hostPorts    atomic.Int32

	mu    sync.Mutex
	codes map[string]int // "Op Code" -> count; guarded by mu
	bad   []string       // calls that answered what no call may; guarded by mu
	cut   int            // calls cut off by a deadline; guarded by mu
	ops   int            // guarded by mu
}

func chaosSeed(t *testing.T) uint64 {
	if s := os.Getenv("BERTH_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BERTH_CHAOS_SEED: %v", err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

func chaos(t *testing.T, o chaosOptions) {
	p := newPodEnv(t)
	before := hostNetNow(t)
	r := &chaosRun{
		p:            p,
		seed:         chaosSeed(t),
		cgroupParent: fmt.Sprintf("/berth-e2e-chaos-%d", time.Now().UnixNano()),
		logDir:       t.TempDir(),
		codes:        map[string]int{},
	}
	t.Logf("seed %d (BERTH_CHAOS_SEED=%d replays it)", r.seed, r.seed)
	rng := rand.New(rand.NewPCG(r.seed, 1))
	r.marker = strconv.Itoa(7_000_000 + rng.IntN(1_000_000))
	t.Cleanup(func() { removeCgroupTree(r.cgroupParent) })

	kills := 0
	for round := range o.rounds {
		var killed atomic.Bool
		var wg sync.WaitGroup
		rt := p.runtime
		for w := range o.workers {
			wrng := rand.New(rand.NewPCG(r.seed, uint64(2+round*o.workers+w)))
			wg.Go(func() { r.worker(t, rt, wrng, fmt.Sprintf("%d-%d", round, w), o.opsPerWorker, &killed) })
		}
		if o.kill {
			// Not synchronisation: the moment of the kill is what is random.
			time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
			killed.Store(true)
			p.daemon.Kill()
			kills++
			wg.Wait()
			p.restart(t)
		} else {
			wg.Wait()
			// A graceful restart lets every call still running on the
			// daemon (cut off for its caller) finish: a barrier.
			p.restart(t)
		}
		r.checkRecordMatchesHost(t, fmt.Sprintf("round %d", round))
		if t.Failed() {
			t.FailNow()
		}
	}

	// Everything of the test removes cleanly.
	pods, err := p.runtime.ListPodSandbox(t.Context(), &runtime.ListPodSandboxRequest{
		Filter: &runtime.PodSandboxFilter{LabelSelector: map[string]string{"berth-e2e": "chaos"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range pods.Items {
		if _, err := p.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("stop pod %s: %v", sb.Id, err)
		}
		if _, err := p.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("remove pod %s: %v", sb.Id, err)
		}
	}
	if procs := r.markedProcesses(); len(procs) > 0 {
		t.Errorf("container processes left: %v", procs)
	}
	if running := runtimeRunning(t, p.daemon.State); len(running) > 0 {
		t.Errorf("containers left in the runtime: %v", running)
	}
	if leaks, err := e2eenv.Leaks(filepath.Dir(p.daemon.Root)); err != nil || len(leaks) > 0 {
		t.Errorf("leaked (%v):\n%s", err, strings.Join(leaks, "\n"))
	}
	p.checkNothingLeft(t, before)
	if left := cgroupsUnder(r.cgroupParent); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	var summary []string
	for k, n := range r.codes {
		summary = append(summary, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(summary)
	t.Logf("%d calls, %d cut off by a deadline, %d daemon kills, %d pods at the end; answers: %s",
		r.ops, r.cut, kills, len(pods.Items), strings.Join(summary, " "))
	for _, b := range r.bad {
		t.Error(b)
	}
}

// worker runs ops random calls on pods of its own (labelled with its name).
func (r *chaosRun) worker(t *testing.T, rt runtime.RuntimeServiceClient, rng *rand.Rand, name string, ops int, killed *atomic.Bool) {
	podCount, ctrCount := 0, 0
	for range ops {
		if killed.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		pods, perr := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{LabelSelector: map[string]string{"worker": name}}})
		ctrs, cerr := rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{LabelSelector: map[string]string{"worker": name}}})
		cancel()
		if perr != nil || cerr != nil {
			if !killed.Load() {
				r.note(fmt.Sprintf("worker %s: list: %v %v", name, perr, cerr))
			}
			return
		}
		var ready []*runtime.PodSandbox
		for _, sb := range pods.Items {
			if sb.State == runtime.PodSandboxState_SANDBOX_READY {
				ready = append(ready, sb)
			}
		}
		anyPod := func() string { return pods.Items[rng.IntN(len(pods.Items))].Id }
		anyCtr := func() string { return ctrs.Containers[rng.IntN(len(ctrs.Containers))].Id }

		// A quarter of the calls are cut off after 1 to 80 ms.
		callCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cut := rng.IntN(4) == 0
		if cut {
			cancel()
			callCtx, cancel = context.WithTimeout(t.Context(), time.Duration(1+rng.IntN(80))*time.Millisecond)
		}
		var op string
		var err error
		switch k := rng.IntN(100); {
		case k < 15 && len(ready) < 3:
			op = "RunPodSandbox"
			podCount++
			_, err = rt.RunPodSandbox(callCtx, &runtime.RunPodSandboxRequest{Config: r.podConfig(name, podCount)})
		case k < 45 && len(ready) > 0:
			op = "CreateContainer"
			ctrCount++
			sb := ready[rng.IntN(len(ready))]
			var resp *runtime.CreateContainerResponse
			resp, err = rt.CreateContainer(callCtx, &runtime.CreateContainerRequest{
				PodSandboxId: sb.Id, Config: r.containerConfig(name, ctrCount, rng),
			})
			if err == nil && rng.IntN(3) > 0 {
				op = "StartContainer"
				_, err = rt.StartContainer(callCtx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId})
			}
		case k < 55 && len(ctrs.Containers) > 0:
			op = "StartContainer"
			_, err = rt.StartContainer(callCtx, &runtime.StartContainerRequest{ContainerId: anyCtr()})
		case k < 63 && len(ctrs.Containers) > 0:
			op = "StopContainer"
			_, err = rt.StopContainer(callCtx, &runtime.StopContainerRequest{ContainerId: anyCtr(), Timeout: int64(rng.IntN(2))})
		case k < 71 && len(ctrs.Containers) > 0:
			op = "RemoveContainer"
			_, err = rt.RemoveContainer(callCtx, &runtime.RemoveContainerRequest{ContainerId: anyCtr()})
		case k < 77 && len(ctrs.Containers) > 0:
			op = "ExecSync"
			_, err = rt.ExecSync(callCtx, &runtime.ExecSyncRequest{ContainerId: anyCtr(), Cmd: []string{"echo", "hi"}, Timeout: 5})
		case k < 82 && len(ctrs.Containers) > 0:
			op = "UpdateContainerResources"
			_, err = rt.UpdateContainerResources(callCtx, &runtime.UpdateContainerResourcesRequest{
				ContainerId: anyCtr(),
				Linux:       &runtime.LinuxContainerResources{CpuShares: int64(256 + rng.IntN(768)), MemoryLimitInBytes: int64(32+rng.IntN(64)) << 20},
			})
		case k < 88 && len(ctrs.Containers) > 0:
			op = "ContainerStatus"
			_, err = rt.ContainerStatus(callCtx, &runtime.ContainerStatusRequest{ContainerId: anyCtr(), Verbose: rng.IntN(2) == 0})
		case k < 94 && len(pods.Items) > 0:
			op = "StopPodSandbox"
			_, err = rt.StopPodSandbox(callCtx, &runtime.StopPodSandboxRequest{PodSandboxId: anyPod()})
		case len(pods.Items) > 0:
			op = "RemovePodSandbox"
			_, err = rt.RemovePodSandbox(callCtx, &runtime.RemovePodSandboxRequest{PodSandboxId: anyPod()})
		default:
			op = "PodSandboxStatus"
			if len(pods.Items) > 0 {
				_, err = rt.PodSandboxStatus(callCtx, &runtime.PodSandboxStatusRequest{PodSandboxId: anyPod()})
			}
		}
		cancel()
		r.record(name, op, cut, err, killed.Load())
	}
}

// record counts a call's answer and keeps those no call may give: Internal
// or Unknown ever, InvalidArgument for these valid requests, a deadline on
// a call that was not cut off.
func (r *chaosRun) record(worker, op string, cut bool, err error, killed bool) {
	code := status.Code(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops++
	if cut {
		r.cut++
	}
	r.codes[op+" "+code.String()]++
	if killed {
		return // the daemon went away under the call: any transport error
	}
	switch code {
	case codes.Internal, codes.Unknown, codes.InvalidArgument:
		r.bad = append(r.bad, fmt.Sprintf("worker %s: %s: %v", worker, op, err))
	case codes.DeadlineExceeded, codes.Canceled:
		if !cut {
			r.bad = append(r.bad, fmt.Sprintf("worker %s: %s not cut off, yet: %v", worker, op, err))
		}
	}
}

func (r *chaosRun) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bad = append(r.bad, s)
}

func (r *chaosRun) podConfig(worker string, n int) *runtime.PodSandboxConfig {
	name := fmt.Sprintf("chaos-%s-%d", worker, n)
	cfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "chaos", Uid: name},
		Labels:       map[string]string{"berth-e2e": "chaos", "worker": worker},
		LogDirectory: filepath.Join(r.logDir, name), // made by berth
		Linux:        &runtime.LinuxPodSandboxConfig{CgroupParent: r.cgroupParent},
	}
	if n%3 == 0 {
		cfg.PortMappings = []*runtime.PortMapping{{ContainerPort: 80, HostPort: 31000 + r.hostPorts.Add(1)%2000}}
	}
	return cfg
}

// containerConfig is a long-running container, or (one in four) one that
// exits at once with code 3. Every process carries the run's marker.
func (r *chaosRun) containerConfig(worker string, n int, rng *rand.Rand) *runtime.ContainerConfig {
	cmd := []string{"sleep", r.marker}
	if rng.IntN(4) == 0 {
		cmd = []string{"sh", "-c", "exit 3", r.marker}
	}
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: fmt.Sprintf("c%d", n)},
		Image:    &runtime.ImageSpec{Image: busyboxImage},
		Command:  cmd,
		LogPath:  fmt.Sprintf("c%d/0.log", n),
		Labels:   map[string]string{"worker": worker},
	}
}

// checkRecordMatchesHost: every container recorded running runs with the
// recorded PID; none recorded otherwise runs in its runtime; every process
// of the test's containers is one recorded running.
func (r *chaosRun) checkRecordMatchesHost(t *testing.T, when string) {
	t.Helper()
	ctrs, err := r.p.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	inRuntime := strings.Join(runtimeRunning(t, r.p.daemon.State), "\n")
	runningPids := map[int]bool{}
	for _, c := range ctrs.Containers {
		resp, err := r.p.runtime.ContainerStatus(t.Context(), &runtime.ContainerStatusRequest{ContainerId: c.Id, Verbose: true})
		if err != nil {
			t.Errorf("%s: ContainerStatus %s: %v", when, c.Id, err)
			continue
		}
		var info struct{ Pid int }
		_ = json.Unmarshal([]byte(resp.Info["info"]), &info)
		switch st := resp.Status.State; st {
		case runtime.ContainerState_CONTAINER_RUNNING:
			if !r.isMarked(info.Pid) {
				t.Errorf("%s: container %s recorded running with pid %d, which is not its process", when, c.Id, info.Pid)
			}
			runningPids[info.Pid] = true
		default:
			if strings.Contains(inRuntime, c.Id+" running") {
				t.Errorf("%s: container %s recorded %v runs in the runtime", when, c.Id, st)
			}
		}
	}
	for _, pid := range r.markedProcesses() {
		if !runningPids[pid] {
			t.Errorf("%s: process %d of the test's containers runs, recorded for no running container", when, pid)
		}
	}
	t.Logf("%s: %d containers, %d running, record agrees with the host", when, len(ctrs.Containers), len(runningPids))
}

// markedProcesses lists the live processes carrying the run's marker.
func (r *chaosRun) markedProcesses() []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil && r.isMarked(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (r *chaosRun) isMarked(pid int) bool {
	if pid <= 0 || !processRuns(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && slices.Contains(strings.Split(string(b), "\x00"), r.marker)
}

// cgroupsUnder lists the cgroups left below parent, in every hierarchy.
func cgroupsUnder(parent string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	dirs = append(dirs, "/sys/fs/cgroup"+parent)
	var left []string
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() {
				left = append(left, filepath.Join(d, e.Name()))
			}
		}
	}
	return left
}

// removeCgroupTree removes the test's (empty) cgroup parent everywhere.
func removeCgroupTree(parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	dirs = append(dirs, "/sys/fs/cgroup"+parent)
	for _, d := range dirs {
		os.Remove(d)
	}
}
