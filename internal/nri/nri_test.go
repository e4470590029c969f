package nri

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeHost is a runtime with fixed pods and containers.
type fakeHost struct {
	pods []*api.PodSandbox
	ctrs []*api.Container
}

func (h *fakeHost) List(context.Context) ([]*api.PodSandbox, []*api.Container) { return h.pods, h.ctrs }
func (h *fakeHost) Update(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return nil, nil
}
func (h *fakeHost) Evict(context.Context, []*api.ContainerEviction) error { return nil }

// recorder is a plugin that records the events it sees.
type recorder struct {
	mu     sync.Mutex
	events []string
	synced chan struct{}
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) Synchronize(context.Context, []*api.PodSandbox, []*api.Container) ([]*api.ContainerUpdate, error) {
	close(r.synced)
	return nil, nil
}
func (r *recorder) StopPodSandbox(_ context.Context, p *api.PodSandbox) error {
	r.add("StopPodSandbox " + p.GetId())
	return nil
}
func (r *recorder) RemovePodSandbox(_ context.Context, p *api.PodSandbox) error {
	r.add("RemovePodSandbox " + p.GetId())
	return nil
}
func (r *recorder) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	r.add("StopContainer " + c.GetId())
	return nil, nil
}
func (r *recorder) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	r.add("RemoveContainer " + c.GetId())
	return nil
}

// start serves NRI on a temporary socket with host's objects and connects
// a recorder.
func start(t *testing.T, host Host) (*NRI, *recorder) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "nri.sock")
	n, err := New(Config{Enable: true, SocketPath: socket, PluginPath: t.TempDir(), PluginConfigPath: t.TempDir(),
		RegistrationTimeout: 5 * time.Second, RequestTimeout: 2 * time.Second},
		"berth", "test", host, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	rec := &recorder{synced: make(chan struct{})}
	s, err := stub.New(rec, stub.WithPluginName("recorder"), stub.WithPluginIdx("10"), stub.WithSocketPath(socket))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); s.Stop(); <-done })
	select {
	case <-rec.synced:
	case <-time.After(10 * time.Second):
		t.Fatal("plugin not synchronized")
	}
	// Registered after its Synchronize: one event round trip settles it.
	deadline := time.Now().Add(10 * time.Second)
	probe := &api.PodSandbox{Id: "probe"}
	for n.RunPodSandbox(context.Background(), probe) == nil && n.RemovePodSandbox(context.Background(), probe) == nil {
		if slices.Contains(rec.seen(), "RemovePodSandbox probe") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	rec.mu.Lock()
	rec.events = nil
	rec.mu.Unlock()
	return n, rec
}

// TestEachObjectStopsOnceAndBeforeRemoval: a container or pod is stopped
// for plugins once however often it is stopped, and removing one that was
// not stopped stops it first.
func TestEachObjectStopsOnceAndBeforeRemoval(t *testing.T) {
	n, rec := start(t, &fakeHost{})
	ctx := context.Background()
	pod := &api.PodSandbox{Id: "pod"}
	stopped := &api.Container{Id: "stopped", PodSandboxId: "pod"}
	running := &api.Container{Id: "running", PodSandboxId: "pod"}
	if err := n.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*api.Container{stopped, running} {
		if _, err := n.CreateContainer(ctx, pod, c); err != nil {
			t.Fatal(err)
		}
		if err := n.StartContainer(ctx, pod, c); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := n.StopContainer(ctx, pod, stopped); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*api.Container{stopped, running} {
		if err := n.RemoveContainer(ctx, pod, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.StopContainer(ctx, pod, running); err != nil { // after removal: nothing
		t.Fatal(err)
	}
	for range 2 {
		if err := n.StopPodSandbox(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.RemovePodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"StopContainer stopped", "RemoveContainer stopped",
		"StopContainer running", "RemoveContainer running",
		"StopPodSandbox pod", "RemovePodSandbox pod",
	}
	if got := rec.seen(); !slices.Equal(got, want) {
		t.Errorf("events\n%v\nwant\n%v", got, want)
	}
}

// TestKnownAfterRestart: objects the runtime had before a restart are
// stopped and removed for plugins like any other, and those already
// stopped are not stopped again.
func TestKnownAfterRestart(t *testing.T) {
	host := &fakeHost{
		pods: []*api.PodSandbox{{Id: "ready"}, {Id: "stopped"}},
		ctrs: []*api.Container{
			{Id: "running", PodSandboxId: "ready", State: api.ContainerState_CONTAINER_RUNNING},
			{Id: "exited", PodSandboxId: "ready", State: api.ContainerState_CONTAINER_STOPPED},
		},
	}
	n, rec := start(t, host)
	n.Known(host.pods, map[string]bool{"stopped": true}, host.ctrs)
	ctx := context.Background()
	for _, c := range host.ctrs {
		if err := n.StopContainer(ctx, host.pods[0], c); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range host.pods {
		if err := n.StopPodSandbox(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.RemovePodSandbox(ctx, host.pods[1]); err != nil {
		t.Fatal(err)
	}
	want := []string{"StopContainer running", "StopPodSandbox ready", "RemovePodSandbox stopped"}
	if got := rec.seen(); !slices.Equal(got, want) {
		t.Errorf("events\n%v\nwant\n%v", got, want)
	}
}

// TestDisabledDoesNothing: a nil NRI is safe to call and lets everything
// through unchanged.
func TestDisabledDoesNothing(t *testing.T) {
	n, err := New(Config{Enable: false}, "berth", "test", &fakeHost{}, slog.Default())
	if err != nil || n != nil || n.Enabled() {
		t.Fatalf("disabled: %v, %v", n, err)
	}
	ctx := context.Background()
	n.BlockSync()()
	res := &api.LinuxResources{Memory: &api.LinuxMemory{Limit: api.Int64(1)}}
	if got, err := n.UpdateContainer(ctx, nil, nil, res); err != nil || got != res {
		t.Errorf("UpdateContainer: %v, %v", got, err)
	}
	if adj, err := n.CreateContainer(ctx, nil, nil); adj != nil || err != nil {
		t.Errorf("CreateContainer: %v, %v", adj, err)
	}
	if err := n.Start(); err != nil {
		t.Error(err)
	}
	if n.Stats() != nil {
		t.Error("stats of a disabled NRI")
	}
}

// TestAdjustSpec: an adjustment reaches the spec: environment replaced
// by key, an rlimit replacing the spec's of its type, a mount replacing
// one at the same destination, a device with its cgroup rule, resources,
// OOM score, cgroups path and annotations.
func TestAdjustSpec(t *testing.T) {
	sp := &specs.Spec{
		Process: &specs.Process{
			Env:     []string{"PATH=/bin", "KEEP=1"},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20}},
		},
		Mounts:      []specs.Mount{{Destination: "/data", Source: "/old", Type: "bind"}},
		Linux:       &specs.Linux{CgroupsPath: "/pod/ctr"},
		Annotations: map[string]string{"a": "1"},
	}
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("PATH", "/usr/bin")
	adj.AddEnv("NEW", "2")
	adj.AddRlimit("RLIMIT_NOFILE", 1234, 1000)
	adj.AddMount(&api.Mount{Destination: "/data", Source: "/new", Type: "bind", Options: []string{"rbind", "ro"}})
	adj.AddDevice(&api.LinuxDevice{Path: "/dev/x", Type: "c", Major: 1, Minor: 5})
	adj.SetLinuxMemoryLimit(64 << 20)
	adj.SetLinuxCPUShares(512)
	oom := 500
	adj.SetLinuxOomScoreAdj(&oom)
	adj.SetLinuxCgroupsPath("/elsewhere/ctr")
	adj.AddAnnotation("b", "2")
	if err := Adjust(sp, adj, AdjustOptions{}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=/usr/bin", "KEEP=1", "NEW=2"}; !slices.Equal(sp.Process.Env, want) {
		t.Errorf("env %v, want %v", sp.Process.Env, want)
	}
	if want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1234, Soft: 1000}}; !slices.Equal(sp.Process.Rlimits, want) {
		t.Errorf("rlimits %v, want %v", sp.Process.Rlimits, want)
	}
	if len(sp.Mounts) != 1 || sp.Mounts[0].Source != "/new" {
		t.Errorf("mounts %v, want /new at /data only", sp.Mounts)
	}
	if len(sp.Linux.Devices) != 1 || sp.Linux.Devices[0].Path != "/dev/x" || len(sp.Linux.Resources.Devices) != 1 || !sp.Linux.Resources.Devices[0].Allow {
		t.Errorf("devices %v, cgroup rules %v", sp.Linux.Devices, sp.Linux.Resources.Devices)
	}
	if r := sp.Linux.Resources; *r.Memory.Limit != 64<<20 || *r.CPU.Shares != 512 {
		t.Errorf("resources %+v", r)
	}
	if *sp.Process.OOMScoreAdj != 500 || sp.Linux.CgroupsPath != "/elsewhere/ctr" || sp.Annotations["b"] != "2" || sp.Annotations["a"] != "1" {
		t.Errorf("oom %d, cgroups path %q, annotations %v", *sp.Process.OOMScoreAdj, sp.Linux.CgroupsPath, sp.Annotations)
	}
}
