package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/netconf"
	"github.com/berth-cri/berth/internal/store"
)

type fixture struct {
	svc     *Service
	store   *store.Store
	gate    *Gate
	runtime runtime.RuntimeServiceClient
	image   runtime.ImageServiceClient
	network *netconf.Result
}

// newFixture serves a Service over an in-memory connection through the same
// interceptors the daemon uses.
func newFixture(t *testing.T, runtimeBinary string) *fixture {
	t.Helper()
	return newFixtureWith(t, runtimeBinary, nil)
}

// newFixtureWith is newFixture with opts changed by adjust (fakes at the
// seams) before the Service is built.
func newFixtureWith(t *testing.T, runtimeBinary string, adjust func(*Options)) *fixture {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{store: st, gate: &Gate{}, network: &netconf.Result{Ready: true}}
	cfg := config.Default()
	cfg.Root = t.TempDir()
	cfg.State = t.TempDir()
	cfg.Runtime.Handlers = map[string]config.Handler{"runc": {Path: runtimeBinary}}
	opts := Options{
		Config:       cfg,
		Store:        st,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Images:       noImages{},
		ProbeNetwork: func() netconf.Result { return *f.network },
	}
	if adjust != nil {
		adjust(&opts)
	}
	svc := New(opts)
	f.svc = svc
	unary, stream := Interceptors(slog.New(slog.NewTextHandler(io.Discard, nil)), f.gate, nil)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	svc.Register(srv)
	lis := bufconn.Listen(1 << 20)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.runtime = runtime.NewRuntimeServiceClient(conn)
	f.image = runtime.NewImageServiceClient(conn)
	return f
}

// noImages is an image service with no images.
type noImages struct{}

func (noImages) Pull(context.Context, string, *image.Auth) (image.Image, error) {
	return image.Image{}, errdefs.ErrNotImplemented
}
func (noImages) Get(ref string) (image.Image, error) {
	return image.Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}
func (noImages) List() []image.Image                  { return nil }
func (noImages) Remove(context.Context, string) error { return nil }
func (noImages) MountRootfs(context.Context, string, string, string, []specs.LinuxIDMapping, []specs.LinuxIDMapping) error {
	return errdefs.ErrNotImplemented
}
func (noImages) MountView(context.Context, string, string, string, []specs.LinuxIDMapping, []specs.LinuxIDMapping) error {
	return errdefs.ErrNotImplemented
}
func (noImages) UnmountRootfs(context.Context, string, string) error { return nil }
func (noImages) RemoveSnapshot(context.Context, string) error        { return nil }
func (noImages) SnapshotterName() string                             { return "overlayfs" }
func (noImages) RootfsUsage(context.Context, string) (uint64, uint64, error) {
	return 0, 0, errdefs.ErrNotFound
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

func TestGateUnavailableUntilRecovered(t *testing.T) {
	f := newFixture(t, "sh")
	_, err := f.runtime.Version(t.Context(), &runtime.VersionRequest{})
	wantCode(t, err, codes.Unavailable)
	if !strings.Contains(err.Error(), "recovery") {
		t.Errorf("Unavailable message does not say why: %v", err)
	}
	f.gate.Open()
	if _, err := f.runtime.Version(t.Context(), &runtime.VersionRequest{}); err != nil {
		t.Fatalf("Version after recovery: %v", err)
	}
}

func TestVersion(t *testing.T) {
	f := newFixture(t, "sh")
	f.gate.Open()
	v, err := f.runtime.Version(t.Context(), &runtime.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" || v.Version != "0.1.0" || v.RuntimeVersion == "" {
		t.Fatalf("Version = %+v", v)
	}
}

func TestStatusConditionsTellTheTruth(t *testing.T) {
	f := newFixture(t, "no-such-runtime-binary")
	f.gate.Open()
	f.network = &netconf.Result{Reason: netconf.ReasonNoConfig, Message: "no network config found in /x"}
	resp, err := f.runtime.Status(t.Context(), &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtime.RuntimeCondition{}
	for _, c := range resp.Status.Conditions {
		conds[c.Type] = c
	}
	if c := conds[runtime.RuntimeReady]; c == nil || c.Status || c.Reason != reasonRuntimeMissing {
		t.Errorf("RuntimeReady = %+v, want false with reason", c)
	}
	if c := conds[runtime.NetworkReady]; c == nil || c.Status || c.Reason != netconf.ReasonNoConfig || c.Message == "" {
		t.Errorf("NetworkReady = %+v, want false with reason", c)
	}
	for _, k := range []string{"config", "network", "runtime"} {
		if !strings.HasPrefix(resp.Info[k], "{") {
			t.Errorf("verbose info %q = %q, want a JSON object", k, resp.Info[k])
		}
	}

	// A config that becomes loadable is picked up by the next call.
	f.network = &netconf.Result{Ready: true}
	resp, err = f.runtime.Status(t.Context(), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Status.Conditions[1]; c.Type != runtime.NetworkReady || !c.Status {
		t.Errorf("NetworkReady after config appeared = %+v", c)
	}
	if resp.Info != nil {
		t.Errorf("non-verbose Status returned info")
	}
}

func TestRuntimeConfigAndUpdate(t *testing.T) {
	f := newFixture(t, "sh")
	f.gate.Open()
	rc, err := f.runtime.RuntimeConfig(t.Context(), &runtime.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.GetLinux() == nil {
		t.Fatal("RuntimeConfig has no linux section")
	}
	update := func(cidr string) error {
		_, err := f.runtime.UpdateRuntimeConfig(t.Context(), &runtime.UpdateRuntimeConfigRequest{
			RuntimeConfig: &runtime.RuntimeConfig{NetworkConfig: &runtime.NetworkConfig{PodCidr: cidr}},
		})
		return err
	}
	if err := update("10.244.1.0/24,fd00:1::/64"); err != nil {
		t.Fatalf("valid dual-stack CIDR: %v", err)
	}
	err = update("10.244.1.0/33")
	wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "pod_cidr") {
		t.Errorf("error does not name the field: %v", err)
	}
	if _, err := f.runtime.UpdateRuntimeConfig(t.Context(), &runtime.UpdateRuntimeConfigRequest{}); err != nil {
		t.Errorf("empty request: %v", err)
	}
}

func addSandbox(t *testing.T, st *store.Store, id, name string) {
	t.Helper()
	err := st.Sandboxes.Add(store.Sandbox{
		ID:        id,
		Metadata:  store.PodMetadata{Name: name, Namespace: "ns", UID: "u-" + name},
		Labels:    map[string]string{"app": name},
		CreatedAt: time.Unix(1700000000, 0),
		Ready:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSandboxLookups(t *testing.T) {
	f := newFixture(t, "sh")
	f.gate.Open()
	a, b := "aa11"+strings.Repeat("0", 60), "aa22"+strings.Repeat("0", 60)
	addSandbox(t, f.store, a, "web")
	addSandbox(t, f.store, b, "db")

	for _, tc := range []struct {
		id   string
		want codes.Code
	}{
		{"", codes.InvalidArgument},
		{"aa", codes.InvalidArgument}, // ambiguous
		{"ffff", codes.NotFound},
		{"aa11", codes.OK},
		{a, codes.OK},
	} {
		resp, err := f.runtime.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: tc.id})
		if got := status.Code(err); got != tc.want {
			t.Errorf("PodSandboxStatus(%q) code = %v (%v), want %v", tc.id, got, err, tc.want)
			continue
		}
		if tc.want == codes.OK {
			s := resp.Status
			if s.Id != a || s.Metadata.Name != "web" || s.State != runtime.PodSandboxState_SANDBOX_READY || s.CreatedAt != 1700000000*1e9 {
				t.Errorf("PodSandboxStatus(%q) = %+v", tc.id, s)
			}
		}
	}

	list, err := f.runtime.ListPodSandbox(t.Context(), &runtime.ListPodSandboxRequest{
		Filter: &runtime.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}},
	})
	if err != nil || len(list.Items) != 1 || list.Items[0].Id != b {
		t.Fatalf("ListPodSandbox by label = %v, %v", list, err)
	}
	list, err = f.runtime.ListPodSandbox(t.Context(), &runtime.ListPodSandboxRequest{
		Filter: &runtime.PodSandboxFilter{State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_NOTREADY}},
	})
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("ListPodSandbox NOTREADY = %v, %v", list, err)
	}

	// Idempotent stop/remove of unknown pods; a known pod reaches work not built yet.
	if _, err := f.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: "not-a-pod"}); err != nil {
		t.Errorf("StopPodSandbox(unknown): %v", err)
	}
	if _, err := f.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: "not-a-pod"}); err != nil {
		t.Errorf("RemovePodSandbox(unknown): %v", err)
	}
	_, err = f.runtime.StopPodSandbox(t.Context(), &runtime.StopPodSandboxRequest{PodSandboxId: "aa"})
	wantCode(t, err, codes.InvalidArgument)

}

func TestContainerLookups(t *testing.T) {
	f := newFixture(t, "sh")
	f.gate.Open()
	sb := store.NewID()
	c := store.Container{
		ID: store.NewID(), SandboxID: sb, Metadata: store.ContainerMetadata{Name: "c"},
		Image: "busybox", CreatedAt: time.Unix(1700000000, 5), StartedAt: time.Unix(1700000001, 0),
	}
	if err := f.store.Containers.Add(c); err != nil {
		t.Fatal(err)
	}
	resp, err := f.runtime.ContainerStatus(t.Context(), &runtime.ContainerStatusRequest{ContainerId: c.ID[:6]})
	if err != nil {
		t.Fatal(err)
	}
	s := resp.Status
	if s.State != runtime.ContainerState_CONTAINER_RUNNING || s.StartedAt == 0 || s.FinishedAt != 0 || s.CreatedAt == 0 {
		t.Errorf("ContainerStatus = %+v", s)
	}
	_, err = f.runtime.ContainerStatus(t.Context(), &runtime.ContainerStatusRequest{})
	wantCode(t, err, codes.InvalidArgument)
	_, err = f.runtime.ContainerStatus(t.Context(), &runtime.ContainerStatusRequest{ContainerId: "nope"})
	wantCode(t, err, codes.NotFound)

	list, err := f.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{
		Filter: &runtime.ContainerFilter{PodSandboxId: sb[:8]},
	})
	if err != nil || len(list.Containers) != 1 {
		t.Fatalf("ListContainers by pod = %v, %v", list, err)
	}
	list, err = f.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{
		Filter: &runtime.ContainerFilter{State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_EXITED}},
	})
	if err != nil || len(list.Containers) != 0 {
		t.Fatalf("ListContainers EXITED = %v, %v", list, err)
	}
	if _, err := f.runtime.RemoveContainer(t.Context(), &runtime.RemoveContainerRequest{ContainerId: "gone"}); err != nil {
		t.Errorf("RemoveContainer(unknown): %v", err)
	}
	if _, err := f.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: "gone"}); err != nil {
		t.Errorf("StopContainer(unknown): %v", err)
	}
}

// TestCheckpointNeedsCRIU: checkpoint calls name what is missing — the
// field, the object, or a usable CRIU — and a usable CRIU gets an honest
// Unimplemented (the archive is not built yet).
func TestCheckpointNeedsCRIU(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "criu")
	f := newFixtureWith(t, "sh", func(o *Options) { o.Config.Checkpoint.CRIUPath = missing })
	f.gate.Open()
	_, err := f.runtime.CheckpointContainer(t.Context(), &runtime.CheckpointContainerRequest{})
	wantCode(t, err, codes.InvalidArgument)
	_, err = f.runtime.CheckpointContainer(t.Context(), &runtime.CheckpointContainerRequest{ContainerId: "gone"})
	wantCode(t, err, codes.NotFound)
	_, err = f.runtime.CheckpointPod(t.Context(), &runtime.CheckpointPodRequest{PodSandboxId: "gone"})
	wantCode(t, err, codes.NotFound)
	_, err = f.runtime.RestorePod(t.Context(), &runtime.RestorePodRequest{CheckpointPath: "/var/lib/x.tar"})
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), missing+" not found") {
		t.Errorf("RestorePod without CRIU: %v, want the missing binary named", err)
	}

	usable := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(usable, []byte("#!/bin/sh\necho Looks good.\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f = newFixtureWith(t, "sh", func(o *Options) { o.Config.Checkpoint.CRIUPath = usable })
	f.gate.Open()
	_, err = f.runtime.RestorePod(t.Context(), &runtime.RestorePodRequest{CheckpointPath: "/var/lib/x.tar"})
	wantCode(t, err, codes.Unimplemented)
}

func TestImageFsInfo(t *testing.T) {
	f := newFixture(t, "sh")
	f.gate.Open()
	resp, err := f.image.ImageFsInfo(t.Context(), &runtime.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ImageFilesystems) != 1 || resp.ImageFilesystems[0].FsId.Mountpoint == "" || resp.ImageFilesystems[0].UsedBytes == nil {
		t.Fatalf("ImageFsInfo = %+v", resp)
	}
}

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("x: %w", errdefs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("x: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("disk on fire"), codes.Internal},
		{status.Error(codes.Aborted, "kept"), codes.Aborted},
	} {
		if got := status.Code(ToStatus(tc.err)); got != tc.want {
			t.Errorf("ToStatus(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if ToStatus(nil) != nil {
		t.Error("ToStatus(nil) != nil")
	}
}

func TestCheckSysctl(t *testing.T) {
	hostNet := &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}
	hostIPC := &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE}
	for _, tc := range []struct {
		key string
		ns  *runtime.NamespaceOption
		ok  bool
	}{
		{"net.ipv4.ip_forward", nil, true},
		{"net/ipv4/ping_group_range", nil, true},
		{"kernel.shm_rmid_forced", nil, true},
		{"fs.mqueue.msg_max", nil, true},
		{"net.core.somaxconn", hostNet, false},
		{"kernel.msgmax", hostIPC, false},
		{"vm.swappiness", nil, false},
		{"kernel.panic", nil, false},
	} {
		err := checkSysctl(tc.key, tc.ns)
		if (err == nil) != tc.ok || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("checkSysctl(%q, %v) = %v, want ok=%v", tc.key, tc.ns, err, tc.ok)
		}
	}
}

func TestCheckUserns(t *testing.T) {
	one := []*runtime.IDMapping{{ContainerId: 0, HostId: 1000, Length: 65536}}
	for _, tc := range []struct {
		name string
		u    *runtime.UserNamespace
		ok   bool
	}{
		{"none", nil, true},
		{"node", &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}, true},
		{"pod", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}, true},
		{"container", &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}, false},
		{"target", &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}, false},
		{"two mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: append(one, one...), Gids: one}, false},
		{"0 unmapped", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 10}}, Gids: one}, false},
		{"past the largest ID", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{HostId: 1 << 31, Length: 1 << 31}}, Gids: one}, false},
	} {
		if err := checkUserns(&runtime.NamespaceOption{UsernsOptions: tc.u}); (err == nil) != tc.ok || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	pod := &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}
	for _, host := range []*runtime.NamespaceOption{
		{UsernsOptions: pod, Network: runtime.NamespaceMode_NODE},
		{UsernsOptions: pod, Ipc: runtime.NamespaceMode_NODE},
		{UsernsOptions: pod, Pid: runtime.NamespaceMode_NODE},
	} {
		if err := checkUserns(host); !errdefs.IsInvalidArgument(err) {
			t.Errorf("user namespace with a host namespace %v: %v, want InvalidArgument", host, err)
		}
	}
}
