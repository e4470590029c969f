package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/store"
)

// fakeMonitor is every pod's monitor, scripted per test.
type fakeMonitor struct {
	mu      sync.Mutex
	calls   []string
	start   func(ctx context.Context, id string) (int, error)
	settled []api.Container
	kill    error
	launch  error
	procs   []*os.Process // "monitors" launched; guarded by mu
}

func (m *fakeMonitor) called(op string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, op)
}

func (m *fakeMonitor) Launch(context.Context, monitor.LaunchOptions) (int, error) {
	m.called("launch")
	if m.launch != nil {
		return 0, m.launch
	}
	// A process of its own: a rollback kills "the monitor".
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go cmd.Wait()
	m.mu.Lock()
	m.procs = append(m.procs, cmd.Process)
	m.mu.Unlock()
	return cmd.Process.Pid, nil
}

func (m *fakeMonitor) killAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.procs {
		p.Kill()
	}
}
func (m *fakeMonitor) Client(string) monitorClient { return m }
func (m *fakeMonitor) Start(ctx context.Context, id, _ string, _ monitor.StartOptions) (int, error) {
	m.called("start")
	return m.start(ctx, id)
}
func (m *fakeMonitor) Kill(context.Context, string, syscall.Signal, bool) error {
	m.called("kill")
	return m.kill
}
func (m *fakeMonitor) Delete(context.Context, string) error { m.called("delete"); return nil }
func (m *fakeMonitor) Reopen(context.Context, string, string, string) error {
	return nil
}
func (m *fakeMonitor) State(context.Context) ([]api.Container, error) { return m.settled, nil }
func (m *fakeMonitor) Protocol(context.Context) (int, error)          { return api.Protocol, nil }
func (m *fakeMonitor) SettledState(context.Context) ([]api.Container, error) {
	m.called("settle")
	return m.settled, nil
}
func (m *fakeMonitor) Pause(context.Context) (int, error) { return 0, errors.New("no pause here") }
func (m *fakeMonitor) Shutdown(context.Context) error     { m.called("shutdown"); return nil }
func (m *fakeMonitor) Exec(context.Context, string, any, monitor.Stdio) (int32, error) {
	return 0, nil
}
func (m *fakeMonitor) Attach(context.Context, string, monitor.Stdio) (int32, error) { return 0, nil }
func (m *fakeMonitor) Events(ctx context.Context, _ func(), _ func(api.Event)) error {
	<-ctx.Done()
	return ctx.Err()
}

// fakeNetwork attaches pods, or fails to.
type fakeNetwork struct {
	mu       sync.Mutex
	setup    error
	attached map[string]bool
}

func (n *fakeNetwork) Setup(_ context.Context, p network.Pod) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.setup != nil {
		return nil, n.setup
	}
	n.attached[p.ID] = true
	return []string{"10.0.0.2"}, nil
}

func (n *fakeNetwork) Teardown(_ context.Context, p network.Pod) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.attached, p.ID)
	return nil
}

// fakeNamespaces makes pod directories and nothing else.
type fakeNamespaces struct {
	mu   sync.Mutex
	dirs map[string]bool
}

func (n *fakeNamespaces) Create(s sandbox.Spec) (sandbox.Paths, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dirs[s.Dir] = true
	return sandbox.Paths{Dir: s.Dir, NetNS: filepath.Join(s.Dir, "ns", "net")}, os.MkdirAll(s.Dir, 0o700)
}

func (n *fakeNamespaces) Remove(dir string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.dirs, dir)
	return os.RemoveAll(dir)
}

type seamFixture struct {
	*fixture
	mon *fakeMonitor
	net *fakeNetwork
	ns  *fakeNamespaces
}

func newSeamFixture(t *testing.T) *seamFixture {
	t.Helper()
	sf := &seamFixture{
		mon: &fakeMonitor{},
		net: &fakeNetwork{attached: map[string]bool{}},
		ns:  &fakeNamespaces{dirs: map[string]bool{}},
	}
	sf.fixture = newFixtureWith(t, "sh", func(o *Options) {
		o.Monitors, o.Network, o.Namespaces = sf.mon, sf.net, sf.ns
	})
	t.Cleanup(sf.mon.killAll)
	sf.gate.Open()
	return sf
}

// addPod records a ready pod; addContainer a container of it in state.
func (f *seamFixture) addPod(t *testing.T, ready bool) store.Sandbox {
	t.Helper()
	raw, _ := proto.Marshal(&runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Uid: "u", Namespace: "n"}})
	sb := store.Sandbox{
		ID: store.NewID(), Metadata: store.PodMetadata{Name: "p", UID: "u", Namespace: "n"},
		Ready: ready, Config: raw, MonitorSocket: "fake.sock", CreatedAt: time.Now(),
	}
	if err := f.store.Sandboxes.Add(sb); err != nil {
		t.Fatal(err)
	}
	return sb
}

func (f *seamFixture) addContainer(t *testing.T, podID string, st store.ContainerState) store.Container {
	t.Helper()
	raw, _ := proto.Marshal(&runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}})
	c := store.Container{
		ID: store.NewID(), SandboxID: podID, Metadata: store.ContainerMetadata{Name: fmt.Sprint(time.Now().UnixNano())},
		Config: raw, Bundle: t.TempDir(), CreatedAt: time.Now().UTC(),
	}
	if st >= store.ContainerRunning {
		c.StartedAt, c.Pid = time.Now().UTC(), 4242
	}
	if st == store.ContainerExited {
		c.FinishedAt = time.Now().UTC()
	}
	if err := f.store.Containers.Add(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *seamFixture) container(t *testing.T, id string) store.Container {
	t.Helper()
	c, err := f.store.Containers.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStartContainerRecordsWhatTheMonitorDid: however the monitor's
// answer goes, the record ends as what the monitor did, and the caller
// gets a code that says so.
func TestStartContainerRecordsWhatTheMonitorDid(t *testing.T) {
	for _, tc := range []struct {
		name      string
		start     error
		settled   bool // the monitor's state shows the container started
		wantCode  codes.Code
		wantState store.ContainerState
		wantCalls []string
	}{
		{"started", nil, false, codes.OK, store.ContainerRunning, []string{"start"}},
		{"monitor unreachable: it may yet start it", monitor.ErrUnreachable, false, codes.Unavailable, store.ContainerCreated, []string{"start"}},
		{"started before a daemon crash", monitor.ErrAlreadyStarted, true, codes.OK, store.ContainerRunning, []string{"start", "settle"}},
		{"still being started", monitor.ErrAlreadyStarted, false, codes.Unavailable, store.ContainerCreated, []string{"start", "settle"}},
		{"log file unusable", fmt.Errorf("open log: denied: %w", monitor.ErrLogPath), false, codes.FailedPrecondition, store.ContainerExited, []string{"start"}},
		{"runtime refused", errors.New("runc run: exec: \"nope\": executable file not found"), false, codes.FailedPrecondition, store.ContainerExited, []string{"start"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSeamFixture(t)
			sb := f.addPod(t, true)
			c := f.addContainer(t, sb.ID, store.ContainerCreated)
			f.mon.start = func(context.Context, string) (int, error) { return 42, tc.start }
			if tc.settled {
				f.mon.settled = []api.Container{{ID: c.ID, Pid: 42, Running: true}}
			}
			_, err := f.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: c.ID})
			wantCode(t, err, tc.wantCode)
			got := f.container(t, c.ID)
			if got.State() != tc.wantState {
				t.Errorf("recorded %s, want %s", stateName(got.State()), stateName(tc.wantState))
			}
			if got.State() == store.ContainerRunning && got.Pid != 42 {
				t.Errorf("recorded pid %d, want 42", got.Pid)
			}
			if got.State() == store.ContainerExited && got.Reason != reasonStartError {
				t.Errorf("recorded reason %q, want %s", got.Reason, reasonStartError)
			}
			if !slices.Equal(f.mon.calls, tc.wantCalls) {
				t.Errorf("monitor calls %v, want %v", f.mon.calls, tc.wantCalls)
			}
		})
	}
}

// TestCancelledStartContainerEndsAsStarted: the caller gives up while the
// monitor is starting the container; the start goes on, is recorded, and
// the caller's retry finds it running.
func TestCancelledStartContainerEndsAsStarted(t *testing.T) {
	f := newSeamFixture(t)
	sb := f.addPod(t, true)
	c := f.addContainer(t, sb.ID, store.ContainerCreated)
	inStart, release := make(chan struct{}), make(chan struct{})
	f.mon.start = func(ctx context.Context, _ string) (int, error) {
		close(inStart)
		<-release
		return 42, ctx.Err() // the daemon's context, not the caller's
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error)
	go func() {
		_, err := f.runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ID})
		errc <- err
	}()
	<-inStart
	cancel()
	wantCode(t, <-errc, codes.Canceled)
	close(release)
	_, err := f.runtime.StartContainer(t.Context(), &runtime.StartContainerRequest{ContainerId: c.ID})
	wantCode(t, err, codes.FailedPrecondition) // waited for the first: running
	if got := f.container(t, c.ID); got.State() != store.ContainerRunning || got.Pid != 42 {
		t.Fatalf("recorded %s pid %d, want running pid 42", stateName(got.State()), got.Pid)
	}
}

// TestStopContainerMonitorGone: a stop the monitor cannot take is
// Unavailable and changes nothing in the record.
func TestStopContainerMonitorGone(t *testing.T) {
	f := newSeamFixture(t)
	sb := f.addPod(t, true)
	c := f.addContainer(t, sb.ID, store.ContainerRunning)
	f.mon.kill = fmt.Errorf("%w: connection refused", monitor.ErrUnreachable)
	_, err := f.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: c.ID, Timeout: 0})
	wantCode(t, err, codes.Unavailable)
	if got := f.container(t, c.ID); got.State() != store.ContainerRunning {
		t.Fatalf("recorded %s after a failed stop, want running", stateName(got.State()))
	}
}

// TestCreateContainerInPodNotReady: no container is made in a pod that is
// stopped (or stopping): FailedPrecondition, nothing recorded.
func TestCreateContainerInPodNotReady(t *testing.T) {
	f := newSeamFixture(t)
	sb := f.addPod(t, false)
	_, err := f.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: sb.ID,
		Config:       &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: "busybox"}},
	})
	wantCode(t, err, codes.FailedPrecondition)
	if n := f.store.Containers.Len(); n != 0 {
		t.Fatalf("%d containers recorded", n)
	}
}

// TestRunPodSandboxRollsBack: a RunPodSandbox failing at any step leaves
// nothing — no record, no namespaces, no network attachment, its name free
// for the retry, which succeeds.
func TestRunPodSandboxRollsBack(t *testing.T) {
	for _, tc := range []struct {
		name           string
		setup, launch  error
		wantCode       codes.Code
		wantLaunchCall bool
	}{
		{"CNI ADD fails", errors.New("plugin bridge failed"), nil, codes.Internal, false},
		{"monitor does not start", nil, errors.New("monitor did not start"), codes.Internal, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSeamFixture(t)
			f.net.setup, f.mon.launch = tc.setup, tc.launch
			cfg := &runtime.PodSandboxConfig{
				Metadata: &runtime.PodSandboxMetadata{Name: "p", Uid: "u", Namespace: "n"},
				Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
				}},
			}
			_, err := f.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg})
			wantCode(t, err, tc.wantCode)
			if n := f.store.Sandboxes.Len(); n != 0 {
				t.Errorf("%d pods recorded", n)
			}
			if len(f.ns.dirs) != 0 || len(f.net.attached) != 0 {
				t.Errorf("left behind: namespaces %v, network attachments %v", f.ns.dirs, f.net.attached)
			}
			if got := slices.Contains(f.mon.calls, "launch"); got != tc.wantLaunchCall {
				t.Errorf("monitor launched: %v, want %v", got, tc.wantLaunchCall)
			}
			f.net.setup, f.mon.launch = nil, nil
			if _, err := f.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg}); err != nil {
				t.Fatalf("retry: %v", err)
			}
		})
	}
}
