package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

func runtimeClient(t *testing.T, d *e2eenv.Daemon) runtime.RuntimeServiceClient {
	t.Helper()
	conn, err := e2eenv.Dial(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtime.NewRuntimeServiceClient(conn)
}

func conditions(t *testing.T, c runtime.RuntimeServiceClient) map[string]*runtime.RuntimeCondition {
	t.Helper()
	resp, err := c.Status(t.Context(), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*runtime.RuntimeCondition{}
	for _, cond := range resp.Status.Conditions {
		out[cond.Type] = cond
	}
	return out
}

func TestVersionAndReadiness(t *testing.T) {
	d := startDaemon(t, e2eenv.DaemonOptions{})
	c := runtimeClient(t, d)
	v, err := c.Version(t.Context(), &runtime.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" {
		t.Fatalf("Version = %+v", v)
	}
	// kubelet shows the node's runtime as berth://Unknown unless its
	// parser accepts the version; both binaries report the same one.
	if _, err := utilversion.ParseSemantic(v.RuntimeVersion); err != nil {
		t.Errorf("RuntimeVersion %q is not semver: %v", v.RuntimeVersion, err)
	}
	for _, bin := range []string{"berth", "berth-monitor"} {
		args := []string{"-version"}
		if bin == "berth" {
			args = []string{"version"}
		}
		out, err := exec.Command(filepath.Join(filepath.Dir(berthBinary), bin), args...).Output()
		if err != nil {
			t.Fatalf("%s %v: %v", bin, args, err)
		}
		if got, want := strings.TrimSpace(string(out)), bin+" "+v.RuntimeVersion; got != want {
			t.Errorf("%s %v printed %q, want %q", bin, args, got, want)
		}
	}
	conds := conditions(t, c)
	if !conds[runtime.RuntimeReady].GetStatus() {
		t.Errorf("RuntimeReady false with runc installed: %+v", conds[runtime.RuntimeReady])
	}
	if !conds[runtime.NetworkReady].GetStatus() {
		t.Errorf("NetworkReady false with a bridge config and /usr/lib/cni plugins: %+v", conds[runtime.NetworkReady])
	}
}

func TestNetworkReadyFollowsConfigDir(t *testing.T) {
	dir := t.TempDir()
	netd := filepath.Join(dir, "empty-net.d")
	if err := os.Mkdir(netd, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, e2eenv.DaemonOptions{Dir: dir, CNIConfDir: netd})
	c := runtimeClient(t, d)
	net := conditions(t, c)[runtime.NetworkReady]
	if net.GetStatus() || net.GetReason() == "" || !strings.Contains(net.GetMessage(), netd) {
		t.Fatalf("NetworkReady with empty conf dir = %+v, want false with reason naming the dir", net)
	}
	t.Log("dropping a CNI config into the directory; no restart")
	if err := e2eenv.WriteCNIConfig(netd); err != nil {
		t.Fatal(err)
	}
	if net := conditions(t, c)[runtime.NetworkReady]; !net.GetStatus() {
		t.Fatalf("NetworkReady after config appeared = %+v", net)
	}
}

func TestSocketModeAndOwner(t *testing.T) {
	d := startDaemon(t, e2eenv.DaemonOptions{})
	fi, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("socket mode %v uid %d gid %d, want socket 0660 root:root", fi.Mode(), st.Uid, st.Gid)
	}
}

func TestRestartAfterSIGKILL(t *testing.T) {
	d := startDaemon(t, e2eenv.DaemonOptions{})
	t.Log("SIGKILL leaves the socket file and the lock file behind")
	d.Kill()
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatalf("socket file gone after SIGKILL (%v); the test would not exercise stale-socket handling", err)
	}
	if err := d.Restart(context.Background()); err != nil {
		t.Fatalf("restart on a stale socket and lock: %v", err)
	}
	if _, err := runtimeClient(t, d).Version(t.Context(), &runtime.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestSIGTERMExitsCleanly(t *testing.T) {
	d := startDaemon(t, e2eenv.DaemonOptions{})
	if err := d.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
		t.Errorf("socket still present after a clean stop: %v", err)
	}
	if !strings.Contains(d.Log(), "shutting down") {
		t.Errorf("log does not record the shutdown:\n%s", d.Log())
	}
}

func TestSecondDaemonOnSameRootRefused(t *testing.T) {
	d := startDaemon(t, e2eenv.DaemonOptions{})
	// Same root, another socket: the lock, not the socket, must stop it.
	cmd := exec.Command(berthBinary, "--config", d.Config, "--address", filepath.Join(t.TempDir(), "other.sock"))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("second daemon on the same root started:\n%s", out)
	}
	if !strings.Contains(string(out), "already using root "+d.Root) {
		t.Fatalf("second daemon's message does not explain the refusal:\n%s", out)
	}
	if _, err := runtimeClient(t, d).Version(t.Context(), &runtime.VersionRequest{}); err != nil {
		t.Fatalf("first daemon hurt by the refused second one: %v", err)
	}
}

func TestLiveSocketNotStolen(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "berth.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, err = e2eenv.StartDaemon(context.Background(), e2eenv.DaemonOptions{Binary: berthBinary, Dir: dir, CNIConfDir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by a running process") {
		t.Fatalf("daemon on a live socket: err = %v, want refusal", err)
	}
}

func TestRecordsSurviveRestartAndResolveByPrefix(t *testing.T) {
	d := startDaemon(t, e2eenv.DaemonOptions{})
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Log("writing two pods whose IDs share a prefix into the stopped daemon's database")
	st, err := store.Open(filepath.Join(d.Root, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := "beef1"+strings.Repeat("0", 59), "beef2"+strings.Repeat("0", 59)
	for i, id := range []string{a, b} {
		err := st.Sandboxes.Add(store.Sandbox{
			ID:        id,
			Metadata:  store.PodMetadata{Name: []string{"a", "b"}[i], Namespace: "default", UID: id[:8]},
			CreatedAt: time.Now(),
			Ready:     true,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := runtimeClient(t, d)
	list, err := c.ListPodSandbox(t.Context(), &runtime.ListPodSandboxRequest{})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("ListPodSandbox after restart = %v, %v", list, err)
	}
	resp, err := c.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: "beef2"})
	if err != nil || resp.Status.Id != b {
		t.Fatalf("PodSandboxStatus(unique prefix) = %v, %v", resp, err)
	}
	_, err = c.PodSandboxStatus(t.Context(), &runtime.PodSandboxStatusRequest{PodSandboxId: "beef"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("ambiguous prefix: err = %v, want InvalidArgument", err)
	}
}

func TestBadInputGetsClearCodes(t *testing.T) {
	d := startDaemon(t, e2eenv.DaemonOptions{})
	c := runtimeClient(t, d)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"PodSandboxStatus empty id", func() error {
			_, err := c.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{})
			return err
		}, codes.InvalidArgument},
		{"PodSandboxStatus unknown id", func() error {
			_, err := c.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: strings.Repeat("a", 64)})
			return err
		}, codes.NotFound},
		{"ContainerStatus empty id", func() error {
			_, err := c.ContainerStatus(ctx, &runtime.ContainerStatusRequest{})
			return err
		}, codes.InvalidArgument},
		{"ContainerStatus unknown id", func() error {
			_, err := c.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: "../../etc"})
			return err
		}, codes.NotFound},
		{"StopPodSandbox empty id", func() error {
			_, err := c.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{})
			return err
		}, codes.InvalidArgument},
		{"RemoveContainer unknown id is idempotent", func() error {
			_, err := c.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: "no-such-container"})
			return err
		}, codes.OK},
		{"UpdateRuntimeConfig malformed CIDR", func() error {
			_, err := c.UpdateRuntimeConfig(ctx, &runtime.UpdateRuntimeConfigRequest{
				RuntimeConfig: &runtime.RuntimeConfig{NetworkConfig: &runtime.NetworkConfig{PodCidr: "not-a-cidr"}},
			})
			return err
		}, codes.InvalidArgument},
		{"RunPodSandbox without config", func() error {
			_, err := c.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{})
			return err
		}, codes.InvalidArgument},
		{"RunPodSandbox without metadata uid", func() error {
			_, err := c.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{
				Metadata: &runtime.PodSandboxMetadata{Name: "n", Namespace: "ns"}}})
			return err
		}, codes.InvalidArgument},
		{"CreateContainer in an unknown pod", func() error {
			_, err := c.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: "nope", Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: "busybox"}}})
			return err
		}, codes.NotFound},
		{"StartContainer unknown", func() error {
			_, err := c.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound},
		{"ExecSync without cmd", func() error {
			_, err := c.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: "nope"})
			return err
		}, codes.InvalidArgument},
	} {
		if got := status.Code(tc.call()); got != tc.want {
			t.Errorf("%s: code = %v, want %v", tc.name, got, tc.want)
		}
	}
	if strings.Contains(d.Log(), "panic") {
		t.Fatalf("daemon log mentions a panic:\n%s", d.Log())
	}
}
