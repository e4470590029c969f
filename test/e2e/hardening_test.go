package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// TestCancelledStartsEndAsRecorded: a StartContainer whose caller gives up
// (deadlines 1 to 51 ms, as a kubelet's runtime request timeout or a
// deleted pod cuts it) still ends as the record says. kubelet's retry waits
// for the first start and answers from the record (OK, or
// FailedPrecondition: already running); the container then runs, recorded
// RUNNING with the PID that runs; StopContainer really stops it and it and
// its pod remove cleanly.
func TestCancelledStartsEndAsRecorded(t *testing.T) {
	p := newPodEnv(t)
	podID, podCfg := p.runPod(t, "cancelled-starts")
	for i := range 11 {
		d := time.Duration(1+5*i) * time.Millisecond
		id := p.createContainer(t, podID, podCfg, fmt.Sprintf("c%d", i), "sleep", "1000")
		ctx, cancel := context.WithTimeout(t.Context(), d)
		_, first := p.runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id})
		cancel()
		_, retry := p.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: id})
		if retry != nil && status.Code(retry) != codes.FailedPrecondition {
			t.Fatalf("deadline %s: first start %v; retried start: %v, want OK or FailedPrecondition", d, first, retry)
		}
		st := p.status(t, id)
		if st.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("deadline %s: first start %v; retried %v; recorded %v (%s), want RUNNING", d, first, retry, st.State, st.Message)
		}
		pid := mainPid(t, p, id)
		if !processRuns(pid) {
			t.Fatalf("deadline %s: recorded running with pid %d, which does not run", d, pid)
		}
		if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("deadline %s: StopContainer: %v", d, err)
		}
		if st := p.status(t, id); st.State != runtime.ContainerState_CONTAINER_EXITED {
			t.Fatalf("deadline %s: after StopContainer %v", d, st.State)
		}
		if processRuns(pid) {
			t.Fatalf("deadline %s: pid %d still runs after StopContainer", d, pid)
		}
		if _, err := p.runtime.RemoveContainer(t.Context(), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("deadline %s: RemoveContainer: %v", d, err)
		}
	}
	p.stopAndRemovePod(t, podID)
}

// processRuns reports whether pid is a live process (not a zombie).
func processRuns(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func (p *podEnv) stopAndRemovePod(t *testing.T, podID string) {
	t.Helper()
	if _, err := p.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := p.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}

// TestConcurrentUpdatesOfOneContainer: 8 UpdateContainerResources of one
// running container at once all succeed, applied one after another: the
// limit in force in the cgroup is the one the bundle's spec, the record
// (ContainerStatus) and the verbose spec report.
func TestConcurrentUpdatesOfOneContainer(t *testing.T) {
	p := newPodEnv(t)
	podID, podCfg := p.runPod(t, "concurrent-updates")
	id := p.createContainer(t, podID, podCfg, "c", "sleep", "1000")
	p.start(t, id)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			res := &runtime.LinuxContainerResources{
				MemoryLimitInBytes: int64(64+i) << 20,
				CpuShares:          int64(512 + i),
			}
			if _, err := p.runtime.UpdateContainerResources(t.Context(), &runtime.UpdateContainerResourcesRequest{ContainerId: id, Linux: res}); err != nil {
				t.Errorf("update %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	recorded := p.status(t, id).GetResources().GetLinux().GetMemoryLimitInBytes()
	if recorded < 64<<20 || recorded > 71<<20 {
		t.Fatalf("recorded memory limit %d is none of the updates'", recorded)
	}
	raw, err := os.ReadFile(filepath.Join(p.daemon.State, "containers", id, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sp struct {
		Linux struct {
			Resources struct {
				Memory struct{ Limit int64 }   `json:"memory"`
				CPU    struct{ Shares uint64 } `json:"cpu"`
			} `json:"resources"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(raw, &sp); err != nil {
		t.Fatal(err)
	}
	if got := sp.Linux.Resources.Memory.Limit; got != recorded {
		t.Errorf("bundle spec has memory limit %d, the record %d", got, recorded)
	}
	want := 512 + (recorded>>20 - 64) // the same update set both
	if got := sp.Linux.Resources.CPU.Shares; int64(got) != want {
		t.Errorf("bundle spec has cpu shares %d, want %d (from the update of memory %d)", got, want, recorded)
	}
	cg := containerCgroup(t, p, id)
	inForce, err := strconv.ParseInt(readCgroupFile(t, "memory", cg, "memory.limit_in_bytes", "memory.max"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if inForce != recorded {
		t.Errorf("cgroup memory limit %d, recorded %d", inForce, recorded)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(p.daemon.State, "containers", id, "*.tmp*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestCreateRacingPodRemoval: a CreateContainer racing StopPodSandbox +
// RemovePodSandbox of its pod either makes a container the removal then
// removes, or fails with NotFound or FailedPrecondition; never a container
// that outlives its pod, and nothing left mounted.
func TestCreateRacingPodRemoval(t *testing.T) {
	p := newPodEnv(t)
	for i := range 40 {
		// On the host's network: no CNI DEL makes the stop long, so the
		// removal is as quick as the create and the two overlap.
		podCfg := &runtime.PodSandboxConfig{
			Metadata: &runtime.PodSandboxMetadata{Name: fmt.Sprintf("race-%d", i), Namespace: "e2e", Uid: fmt.Sprintf("race-%d", i)},
			Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
			}},
		}
		pod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		podID := pod.PodSandboxId
		var wg sync.WaitGroup
		var createErr error
		wg.Go(func() {
			// Not synchronisation: the create starts at a different moment
			// of the removal each round, sweeping through it.
			time.Sleep(time.Duration(i) * 250 * time.Microsecond)
			_, createErr = p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
				PodSandboxId: podID, SandboxConfig: podCfg,
				Config: &runtime.ContainerConfig{
					Metadata: &runtime.ContainerMetadata{Name: "c"},
					Image:    &runtime.ImageSpec{Image: busyboxImage},
					Command:  []string{"sleep", "1000"},
				},
			})
		})
		wg.Go(func() { p.stopAndRemovePod(t, podID) })
		wg.Wait()
		switch status.Code(createErr) {
		case codes.OK, codes.NotFound, codes.FailedPrecondition:
		default:
			t.Errorf("round %d: CreateContainer: %v, want OK, NotFound or FailedPrecondition", i, createErr)
		}
		list, err := p.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Containers) > 0 {
			t.Fatalf("round %d: container %s outlived its pod (create: %v)", i, list.Containers[0].Id, createErr)
		}
		if leaks, err := e2eenv.Leaks(filepath.Dir(p.daemon.Root)); err != nil || len(leaks) > 0 {
			t.Fatalf("round %d: leaked (%v):\n%s", i, err, strings.Join(leaks, "\n"))
		}
	}
}

// TestLogDirectoryMadeWhenMissing: a pod whose log_directory does not
// exist yet still runs its containers: CreateContainer makes the directory
// and the start the log file's own directories, as containerd does (and a
// bind mount's missing host path, as a directory). A
// log_path that leaves the directory through a symlink planted in it is
// FailedPrecondition, and nothing is written outside.
func TestLogDirectoryMadeWhenMissing(t *testing.T) {
	p := newPodEnv(t)
	logDir := filepath.Join(t.TempDir(), "not", "yet")
	hostPath := filepath.Join(t.TempDir(), "volume", "not", "yet")
	cfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "logdir", Namespace: "e2e", Uid: "logdir"},
		LogDirectory: logDir,
	}
	pod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	create := func(name, logPath string) string {
		resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
			PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: name},
				Image:    &runtime.ImageSpec{Image: busyboxImage},
				Command:  []string{"echo", "hello from " + name},
				LogPath:  logPath,
				Mounts:   []*runtime.Mount{{ContainerPath: "/data", HostPath: hostPath}},
			},
		})
		if err != nil {
			t.Fatalf("CreateContainer %s: %v", name, err)
		}
		return resp.ContainerId
	}
	id := create("nested", "nested/0.log")
	if fi, err := os.Stat(hostPath); err != nil || !fi.IsDir() {
		t.Fatalf("missing mount host path after CreateContainer: %v, %v; want a directory made", fi, err)
	}
	if fi, err := os.Stat(logDir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("log directory after CreateContainer: %v, %v; want a 0755 directory", fi, err)
	}
	p.start(t, id)
	p.waitExited(t, id)
	b, err := os.ReadFile(filepath.Join(logDir, "nested", "0.log"))
	if err != nil || !strings.Contains(string(b), "hello from nested") {
		t.Fatalf("log: %q, %v", b, err)
	}

	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(logDir, "escape")); err != nil {
		t.Fatal(err)
	}
	id = create("escape", "escape/0.log")
	_, err = p.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: id})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "log_path") {
		t.Errorf("start with a log_path through a symlink out of the log directory: %v, want FailedPrecondition naming log_path", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) > 0 {
		t.Errorf("wrote outside the log directory: %v", entries)
	}
	p.stopAndRemovePod(t, pod.PodSandboxId)
}
