package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// NRI end to end: berth with test/e2e/nriplugin, a real plugin process on
// the daemon's NRI socket (or started by berth), asked by annotations to
// adjust, veto, hang or just watch.

// nriEvent is one line of the plugin's event file.
type nriEvent struct {
	Event      string   `json:"event"`
	Pod        string   `json:"pod"`
	Container  string   `json:"container"`
	Pods       []string `json:"pods"`
	Containers []string `json:"containers"`
	ExitCode   int32    `json:"exit_code"`
}

// nriPlugin is a running nriplugin process.
type nriPlugin struct {
	cmd    *exec.Cmd
	events string
	exited chan struct{}
}

// startNRIPlugin connects a plugin to socket and waits until berth has
// synchronized it (its first Synchronize event).
func startNRIPlugin(t *testing.T, socket, name string, args ...string) *nriPlugin {
	t.Helper()
	np := &nriPlugin{events: filepath.Join(t.TempDir(), "events.jsonl"), exited: make(chan struct{})}
	args = append([]string{"-socket", socket, "-name", name, "-events", np.events}, args...)
	np.cmd = exec.Command(nriPluginBinary, args...)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "plugin.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	np.cmd.Stderr = logFile
	if err := np.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = np.cmd.Wait(); close(np.exited) }()
	t.Cleanup(np.kill)
	np.waitFor(t, "plugin synchronized", func(evs []nriEvent) bool { return np.count(evs, "Synchronize", "") > 0 })
	return np
}

func (np *nriPlugin) kill() {
	_ = np.cmd.Process.Kill()
	<-np.exited
}

// read returns the events so far.
func (np *nriPlugin) read(t *testing.T) []nriEvent {
	t.Helper()
	f, err := os.Open(np.events)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []nriEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e nriEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("plugin event %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// count counts events of a kind about id (a pod or container; "" for any).
func (np *nriPlugin) count(evs []nriEvent, kind, id string) int {
	n := 0
	for _, e := range evs {
		if e.Event == kind && (id == "" || e.Pod == id && e.Container == "" || e.Container == id) {
			n++
		}
	}
	return n
}

// waitFor polls the events until cond holds.
func (np *nriPlugin) waitFor(t *testing.T, what string, cond func([]nriEvent) bool) []nriEvent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs := np.read(t)
		if cond(evs) {
			return evs
		}
		select {
		case <-np.exited:
			t.Fatalf("plugin exited before %s; events: %+v", what, evs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin: no %s within 30s; events: %+v", what, evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kinds lists the kinds of the events about id, in order.
func kinds(evs []nriEvent, id string) []string {
	var out []string
	for _, e := range evs {
		if e.Container == id || e.Container == "" && e.Pod == id {
			out = append(out, e.Event)
		}
	}
	return out
}

// createAnnotated creates a busybox container with annotations.
func (p *podEnv) createAnnotated(t *testing.T, pod string, podCfg *runtime.PodSandboxConfig, name string, annotations map[string]string, cmd ...string) (string, error) {
	t.Helper()
	resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{
			Metadata:    &runtime.ContainerMetadata{Name: name},
			Image:       &runtime.ImageSpec{Image: busyboxImage},
			Command:     cmd,
			Annotations: annotations,
			LogPath:     name + ".log",
		},
	})
	return resp.GetContainerId(), err
}

// runAnnotatedPod runs a pod with annotations, returning its ID or the error.
func (p *podEnv) runAnnotatedPod(t *testing.T, name string, annotations map[string]string) (string, *runtime.PodSandboxConfig, error) {
	t.Helper()
	cfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: name + "-uid"},
		LogDirectory: filepath.Join(p.logDir, name),
		Annotations:  annotations,
	}
	resp, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg})
	return resp.GetPodSandboxId(), cfg, err
}

func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "NRI plugin refused") || !strings.Contains(err.Error(), "vetoed") {
		t.Fatalf("%s: want FailedPrecondition naming the plugin's veto, got %v", what, err)
	}
}

// removeCgroup removes a cgroup directory (and its parent, which berth did
// not make either) from every hierarchy the host mounts.
func removeCgroup(path string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + path)
	if d := "/sys/fs/cgroup" + path; fileExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		_ = os.Remove(d)
		_ = os.Remove(filepath.Dir(d))
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestNRIAdjustments: a plugin adjusts a container as it is created —
// environment, annotation, mount, device, rlimit, OOM score, memory limit,
// CDI device, poststart hook, cgroups path, seccomp policy — and each is in
// force inside the container (and in its status); the plugin sees each
// lifecycle point once, in order.
func TestNRIAdjustments(t *testing.T) {
	cdiDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cdiDir, "nri-test.yaml"), []byte(`cdiVersion: "0.6.0"
kind: nri.test/device
devices:
- name: one
  containerEdits:
    env: ["CDI_FROM_NRI=yes"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPodEnvOpts(t, e2eenv.DaemonOptions{ExtraConfig: fmt.Sprintf("[cdi]\nspec_dirs = [%q]\n", cdiDir)})
	plugin := startNRIPlugin(t, p.daemon.NRISocket, "adjuster")

	mountDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(mountDir, "hello"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	hookFile := filepath.Join(t.TempDir(), "poststart")
	cgroupsPath := fmt.Sprintf("/berth-nri-e2e-%d/adjusted", os.Getpid())
	t.Cleanup(func() { removeCgroup(cgroupsPath) })
	const memory = 64 << 20

	pod, podCfg := p.runPod(t, "nri-adjust")
	ctr, err := p.createAnnotated(t, pod, podCfg, "adjusted", map[string]string{
		"nri.test/adjust":       "yes",
		"nri.test/mount-source": mountDir,
		"nri.test/memory":       fmt.Sprint(memory),
		"nri.test/cdi-device":   "nri.test/device=one",
		"nri.test/hook-file":    hookFile,
		"nri.test/cgroups-path": cgroupsPath,
		"nri.test/seccomp-deny": "mkdir,mkdirat",
	}, "sleep", "1000")
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	p.start(t, ctr)

	// The pod shares its PID namespace: the container's process is sleep.
	environ, _ := p.exec(t, ctr, "sh", "-c", "tr '\\0' '\\n' < /proc/$(pidof sleep)/environ")
	for _, kv := range []string{"NRI_ADJUSTED=yes", "CDI_FROM_NRI=yes"} {
		if !slices.Contains(strings.Split(environ, "\n"), kv) {
			t.Errorf("the container's environment lacks %s:\n%s", kv, environ)
		}
	}
	for _, c := range []struct{ what, cmd, want string }{
		{"mount", "cat /nri-mount/hello", "from the host"},
		{"mount read-only", "touch /nri-mount/x 2>/dev/null || echo refused", "refused"},
		{"device", "stat -c '%F %t:%T' /dev/nri-zero && head -c 3 /dev/nri-zero | wc -c", "character special file 1:5\n3"},
		{"rlimit", "grep 'Max open files' /proc/$(pidof sleep)/limits | tr -s ' ' | cut -d' ' -f4,5", "1234 1234"},
		{"oom score", "cat /proc/$(pidof sleep)/oom_score_adj", "900"},
		{"seccomp", "mkdir /tmp/nri-denied 2>&1 || true", "mkdir: can't create directory '/tmp/nri-denied': Operation not permitted"},
	} {
		out, _ := p.exec(t, ctr, "sh", "-c", c.cmd)
		if out = strings.TrimSpace(out); out != c.want {
			t.Errorf("%s: %q gave %q, want %q", c.what, c.cmd, out, c.want)
		}
	}
	if procs := readCgroupFile(t, "memory", cgroupsPath, "cgroup.procs", "cgroup.procs"); strings.TrimSpace(procs) == "" {
		t.Errorf("cgroups path %s holds no process", cgroupsPath)
	}
	if b, err := os.ReadFile(hookFile); err != nil || strings.TrimSpace(string(b)) != "started" {
		t.Errorf("poststart hook: %q, %v", b, err)
	}
	if limit := cgroupMemoryLimit(t, cgroupsPath); limit != memory {
		t.Errorf("memory limit in force %d, want %d", limit, memory)
	}
	st := p.status(t, ctr)
	if st.Annotations["nri.test/adjusted"] != "yes" {
		t.Errorf("status annotations lack the plugin's: %v", st.Annotations)
	}
	if got := st.GetResources().GetLinux().GetMemoryLimitInBytes(); got != memory {
		t.Errorf("status memory limit %d, want %d", got, memory)
	}

	for range 2 { // the second stop tells plugins nothing
		if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: ctr}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := p.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	evs := plugin.waitFor(t, "RemovePodSandbox", func(evs []nriEvent) bool { return plugin.count(evs, "RemovePodSandbox", pod) > 0 })
	if got, want := kinds(evs, ctr), []string{"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer", "StopContainer", "RemoveContainer"}; !slices.Equal(got, want) {
		t.Errorf("container events %v, want %v", got, want)
	}
	if got, want := kinds(evs, pod), []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"}; !slices.Equal(got, want) {
		t.Errorf("pod events %v, want %v", got, want)
	}
}

// cgroupMemoryLimit reads the memory limit of a cgroup (v1 or v2).
func cgroupMemoryLimit(t *testing.T, path string) int64 {
	t.Helper()
	var v int64
	raw := readCgroupFile(t, "memory", path, "memory.limit_in_bytes", "memory.max")
	if _, err := fmt.Sscan(raw, &v); err != nil {
		t.Fatalf("memory limit of %s: %q", path, raw)
	}
	return v
}

// TestNRIVetoes: a plugin's veto fails RunPodSandbox, CreateContainer,
// StartContainer, UpdateContainerResources and UpdatePodSandboxResources
// with FailedPrecondition and leaves nothing behind; a plugin's adjustment
// of a resize is what is in force; an accepted pod resize is recorded.
func TestNRIVetoes(t *testing.T) {
	p := newPodEnv(t)
	plugin := startNRIPlugin(t, p.daemon.NRISocket, "vetoer")

	_, _, err := p.runAnnotatedPod(t, "nri-refused", map[string]string{"nri.test/veto": "RunPodSandbox"})
	wantRefused(t, "RunPodSandbox", err)
	pods, err := p.runtime.ListPodSandbox(t.Context(), &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Fatalf("a vetoed pod is listed: %v", pods.Items)
	}
	evs := plugin.read(t)
	refusedPod := ""
	for _, e := range evs {
		if e.Event == "RunPodSandbox" {
			refusedPod = e.Pod
		}
	}
	if got, want := kinds(evs, refusedPod), []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"}; !slices.Equal(got, want) {
		t.Errorf("vetoed pod's events %v, want %v (plugins hear it is gone)", got, want)
	}

	pod, podCfg, err := p.runAnnotatedPod(t, "nri-vetoes", map[string]string{"nri.test/veto": "UpdatePodSandbox"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.createAnnotated(t, pod, podCfg, "refused", map[string]string{"nri.test/veto": "CreateContainer"}, "sleep", "1000")
	wantRefused(t, "CreateContainer", err)
	ctrs, err := p.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs.Containers) != 0 {
		t.Fatalf("a vetoed container is listed: %v", ctrs.Containers)
	}

	noStart, err := p.createAnnotated(t, pod, podCfg, "no-start", map[string]string{"nri.test/veto": "StartContainer"}, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: noStart})
	wantRefused(t, "StartContainer", err)
	if st := p.status(t, noStart); st.State != runtime.ContainerState_CONTAINER_EXITED || st.Reason != "StartError" {
		t.Errorf("vetoed start: state %s reason %q, want EXITED StartError", st.State, st.Reason)
	}
	plugin.waitFor(t, "StopContainer of the vetoed start", func(evs []nriEvent) bool { return plugin.count(evs, "StopContainer", noStart) == 1 })

	noUpdate, err := p.createAnnotated(t, pod, podCfg, "no-update", map[string]string{"nri.test/veto": "UpdateContainer"}, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, noUpdate)
	_, err = p.runtime.UpdateContainerResources(t.Context(), &runtime.UpdateContainerResourcesRequest{
		ContainerId: noUpdate, Linux: &runtime.LinuxContainerResources{MemoryLimitInBytes: 100 << 20},
	})
	wantRefused(t, "UpdateContainerResources", err)
	if got := p.status(t, noUpdate).GetResources().GetLinux().GetMemoryLimitInBytes(); got == 100<<20 {
		t.Error("a vetoed update is reported in force")
	}

	// The plugin turns a resize to 100 MiB into one to 80 MiB.
	adjusted, err := p.createAnnotated(t, pod, podCfg, "adjusted-update", map[string]string{"nri.test/update-memory": fmt.Sprint(80 << 20)}, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, adjusted)
	if _, err := p.runtime.UpdateContainerResources(t.Context(), &runtime.UpdateContainerResourcesRequest{
		ContainerId: adjusted, Linux: &runtime.LinuxContainerResources{MemoryLimitInBytes: 100 << 20, CpuShares: 512},
	}); err != nil {
		t.Fatal(err)
	}
	st := p.status(t, adjusted)
	if got := st.GetResources().GetLinux().GetMemoryLimitInBytes(); got != 80<<20 {
		t.Errorf("status memory limit %d after the plugin's adjustment, want %d", got, 80<<20)
	}
	if limit := cgroupMemoryLimit(t, containerCgroup(t, p, adjusted)); limit != 80<<20 {
		t.Errorf("memory limit in force %d, want %d", limit, 80<<20)
	}

	resize := &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: pod, Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 256 << 20}}
	_, err = p.runtime.UpdatePodSandboxResources(t.Context(), resize)
	wantRefused(t, "UpdatePodSandboxResources", err)

	other, _ := p.runPod(t, "nri-resize")
	resize.PodSandboxId = other
	if _, err := p.runtime.UpdatePodSandboxResources(t.Context(), resize); err != nil {
		t.Fatalf("UpdatePodSandboxResources: %v", err)
	}
	ps, err := p.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: other, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Config struct {
			Linux struct {
				Resources struct {
					MemoryLimitInBytes string `json:"memoryLimitInBytes"` // protojson: int64 as a string
				} `json:"resources"`
			} `json:"linux"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(ps.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info: %v", err)
	}
	if got := info.Config.Linux.Resources.MemoryLimitInBytes; got != fmt.Sprint(256<<20) {
		t.Errorf("verbose status: pod resources memory %s, want %d\n%s", got, 256<<20, ps.Info["info"])
	}
	plugin.waitFor(t, "PostUpdatePodSandbox", func(evs []nriEvent) bool { return plugin.count(evs, "PostUpdatePodSandbox", other) == 1 })
	_, err = p.runtime.UpdatePodSandboxResources(t.Context(), &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: other})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("UpdatePodSandboxResources with nothing to update: want InvalidArgument, got %v", err)
	}
	_, err = p.runtime.UpdatePodSandboxResources(t.Context(), &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "nosuchpod", Resources: resize.Resources})
	if status.Code(err) != codes.NotFound {
		t.Errorf("UpdatePodSandboxResources of an unknown pod: want NotFound, got %v", err)
	}
}

// TestNRIPluginHangsOrDies: a plugin that does not answer is dropped after
// nri.plugin_request_timeout and the call goes on without it; a plugin
// killed while berth runs is dropped at once.
func TestNRIPluginHangsOrDies(t *testing.T) {
	p := newPodEnvOpts(t, e2eenv.DaemonOptions{NRIConfig: `plugin_request_timeout = "1s"`})
	hung := startNRIPlugin(t, p.daemon.NRISocket, "hung")
	pod, podCfg := p.runPod(t, "nri-hang")
	start := time.Now()
	ctr, err := p.createAnnotated(t, pod, podCfg, "past-a-hung-plugin", map[string]string{"nri.test/hang": "CreateContainer"}, "sleep", "1000")
	if err != nil {
		t.Fatalf("CreateContainer past a hung plugin: %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("CreateContainer took %s: the plugin was not waited for", d)
	}
	hung.waitFor(t, "disconnection", func(evs []nriEvent) bool { return hung.count(evs, "Disconnected", "") > 0 })
	p.start(t, ctr)

	dead := startNRIPlugin(t, p.daemon.NRISocket, "killed")
	dead.kill()
	second, err := p.createAnnotated(t, pod, podCfg, "past-a-dead-plugin", nil, "sleep", "1000")
	if err != nil {
		t.Fatalf("CreateContainer past a killed plugin: %v", err)
	}
	p.start(t, second)
	if out, _ := p.exec(t, second, "echo", "ok"); strings.TrimSpace(out) != "ok" {
		t.Errorf("exec: %q", out)
	}
	// Nothing was held: a new plugin connects and sees both containers.
	late := startNRIPlugin(t, p.daemon.NRISocket, "late")
	evs := late.read(t)
	if !slices.Contains(evs[0].Containers, ctr) || !slices.Contains(evs[0].Containers, second) {
		t.Errorf("late plugin's Synchronize lacks the containers: %+v", evs[0])
	}
}

// TestNRIDaemonKilled: berth SIGKILLed with a plugin connected loses
// nothing: the plugin reconnects and synchronizes with every pod and
// container, and their later stops and removals reach it once each.
func TestNRIDaemonKilled(t *testing.T) {
	p := newPodEnv(t)
	plugin := startNRIPlugin(t, p.daemon.NRISocket, "survivor", "-reconnect")
	pod, podCfg := p.runPod(t, "nri-kill")
	running := p.createContainer(t, pod, podCfg, "running", "sleep", "1000")
	p.start(t, running)
	created := p.createContainer(t, pod, podCfg, "created", "true")

	p.killAndRestart(t)
	evs := plugin.waitFor(t, "a second Synchronize", func(evs []nriEvent) bool { return plugin.count(evs, "Synchronize", "") == 2 })
	var resync nriEvent
	for _, e := range evs {
		if e.Event == "Synchronize" {
			resync = e
		}
	}
	if !slices.Contains(resync.Pods, pod) || !slices.Contains(resync.Containers, running) || !slices.Contains(resync.Containers, created) {
		t.Fatalf("resynchronized with %+v, want pod %s and containers %s, %s", resync, pod, running, created)
	}

	p.stopAndRemovePod(t, pod)
	evs = plugin.waitFor(t, "RemovePodSandbox", func(evs []nriEvent) bool { return plugin.count(evs, "RemovePodSandbox", pod) > 0 })
	for _, id := range []string{running, created} {
		if n := plugin.count(evs, "StopContainer", id); n != 1 {
			t.Errorf("container %s: %d StopContainer events, want 1", id, n)
		}
		if n := plugin.count(evs, "RemoveContainer", id); n != 1 {
			t.Errorf("container %s: %d RemoveContainer events, want 1", id, n)
		}
	}
	if n := plugin.count(evs, "StopPodSandbox", pod); n != 1 {
		t.Errorf("%d StopPodSandbox events, want 1", n)
	}
}

// TestNRIPreinstalledPlugin: berth starts the plugins in nri.plugin_path
// (NN-name), synchronizes them and stops them when it stops.
func TestNRIPreinstalledPlugin(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(t.TempDir(), "events.jsonl")
	script := fmt.Sprintf("#!/bin/sh\nexec %s -events %s\n", nriPluginBinary, events)
	if err := os.WriteFile(filepath.Join(dir, "10-preinstalled"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := newPodEnvOpts(t, e2eenv.DaemonOptions{NRIConfig: fmt.Sprintf("plugin_path = %q\nplugin_config_path = %q\n", dir, t.TempDir())})
	plugin := &nriPlugin{events: events, exited: make(chan struct{})}
	plugin.waitFor(t, "the preinstalled plugin's Synchronize", func(evs []nriEvent) bool { return plugin.count(evs, "Synchronize", "") == 1 })
	pod, _ := p.runPod(t, "nri-preinstalled")
	plugin.waitFor(t, "RunPodSandbox", func(evs []nriEvent) bool { return plugin.count(evs, "RunPodSandbox", pod) == 1 })
	st, err := p.runtime.Status(t.Context(), &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Enabled   bool     `json:"enabled"`
		Connected int      `json:"plugins_connected"`
		Invoked   []string `json:"plugins_invoked"`
	}
	if err := json.Unmarshal([]byte(st.Info["nri"]), &info); err != nil {
		t.Fatalf("verbose status nri %q: %v", st.Info["nri"], err)
	}
	if !info.Enabled || info.Connected != 1 || !slices.Contains(info.Invoked, "10-preinstalled") {
		t.Errorf("crictl info's nri: %+v, want enabled with the preinstalled plugin connected and invoked", info)
	}
	p.stopAndRemovePod(t, pod)
	if err := p.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("pgrep", "-f", events).Output(); len(out) > 0 {
		t.Errorf("the preinstalled plugin outlived berth: pids %s", out)
		_ = exec.Command("pkill", "-KILL", "-f", events).Run()
	}
	if err := p.daemon.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	p.reconnect(t)
}

// TestNRIUnderCutOffAndRacingCalls: with a plugin connected, starts cut off
// by short deadlines and stops racing removals on the same containers leave
// every container stopped for the plugin exactly once and before its
// removal, and the record agreeing with the host.
func TestNRIUnderCutOffAndRacingCalls(t *testing.T) {
	p := newPodEnv(t)
	plugin := startNRIPlugin(t, p.daemon.NRISocket, "racer")
	pod, podCfg := p.runPod(t, "nri-race")
	var ids []string
	for i := range 6 {
		ids = append(ids, p.createContainer(t, pod, podCfg, fmt.Sprintf("c%d", i), "sleep", "1000"))
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			// A start its caller gives up on at once still ends as the
			// runtime made it.
			ctx, cancel := context.WithTimeout(t.Context(), time.Duration(i)*time.Millisecond)
			_, _ = p.runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id})
			cancel()
			// A stop and a removal of one container, at once.
			var race sync.WaitGroup
			race.Go(func() { _, _ = p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: id}) })
			race.Go(func() {
				if _, err := p.runtime.RemoveContainer(t.Context(), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
					t.Errorf("RemoveContainer %s: %v", id, err)
				}
			})
			race.Wait()
		})
	}
	wg.Wait()
	list, err := p.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Containers) != 0 {
		t.Errorf("%d containers left after their removal", len(list.Containers))
	}
	if running := runtimeRunning(t, p.daemon.State); len(running) > 0 {
		t.Errorf("containers still in the runtime: %v", running)
	}
	evs := plugin.waitFor(t, "every RemoveContainer", func(evs []nriEvent) bool {
		for _, id := range ids {
			if plugin.count(evs, "RemoveContainer", id) == 0 {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		got := kinds(evs, id)
		stops, removes := plugin.count(evs, "StopContainer", id), plugin.count(evs, "RemoveContainer", id)
		if stops != 1 || removes != 1 || slices.Index(got, "StopContainer") > slices.Index(got, "RemoveContainer") {
			t.Errorf("container %s: events %v, want one StopContainer before one RemoveContainer", id, got)
		}
	}
}
