package kubelet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// nodeName is the kubelet's node: a static pod "app" is "app-berth-node".
const nodeName = "berth-node"

// node is berth with a standalone kubelet on top.
type node struct {
	t       *testing.T
	berth   *e2eenv.Daemon
	cri     runtime.RuntimeServiceClient
	kubelet *e2eenv.Kubelet
}

func startNode(t *testing.T) *node {
	t.Helper()
	cache := os.Getenv("BERTH_E2E_CACHE")
	if cache == "" {
		cache = "/var/cache/berth-e2e"
	}
	binDir := os.Getenv("BERTH_BIN_DIR")
	if binDir == "" {
		t.Fatal("BERTH_BIN_DIR must name the directory with berth, berth-monitor and testbin (make e2e-kubelet sets it)")
	}
	kubeletBin, err := e2eenv.EnsureKubelet(t.Context(), cache)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n := &node{t: t}
	reg, err := e2eenv.ServeTestImages(t.Context(), cache, filepath.Join(binDir, "testbin"), filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	netd := filepath.Join(dir, "net.d")
	if err := e2eenv.WriteCNIConfig(netd); err != nil {
		t.Fatal(err)
	}
	n.berth, err = e2eenv.StartDaemon(t.Context(), e2eenv.DaemonOptions{
		Binary: filepath.Join(binDir, "berth"), Dir: filepath.Join(dir, "berth"),
		RegistryConfigPath: reg.HostsDir, CNIConfDir: netd, CNIBinDirs: []string{"/usr/lib/cni"},
	})
	if err != nil {
		t.Fatal(err)
	}
	n.dial()
	n.kubelet, err = e2eenv.StartKubelet(t.Context(), e2eenv.KubeletOptions{
		Binary: kubeletBin, Dir: filepath.Join(dir, "kubelet"), RuntimeSocket: n.berth.Socket, NodeName: nodeName,
	})
	if err != nil {
		n.berth.Stop()
		t.Fatal(err)
	}
	// kubelet stops first, then berth's pods go (and nothing may be left),
	// then what kubelet changed on the host is undone.
	t.Cleanup(func() {
		n.kubelet.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(n.kubelet.LogPath)
			t.Logf("--- kubelet log (last 8 KiB) ---\n%s", tail(b, 8<<10))
			t.Logf("--- berth log (last 8 KiB) ---\n%s", tail([]byte(n.berth.Log()), 8<<10))
		}
		n.removePods()
		if leaks, err := e2eenv.Leaks(filepath.Dir(n.berth.Root)); err != nil || len(leaks) > 0 {
			t.Errorf("left behind (%v):\n%s", err, strings.Join(leaks, "\n"))
		}
		if err := n.berth.Stop(); err != nil {
			t.Error(err)
		}
		if err := n.kubelet.Cleanup(); err != nil {
			t.Errorf("undo kubelet's host changes: %v", err)
		}
	})
	return n
}

func (n *node) dial() {
	conn, err := e2eenv.Dial(n.berth.Socket)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { conn.Close() })
	n.cri = runtime.NewRuntimeServiceClient(conn)
}

// removePods removes what pods kubelet left on berth (a failed test).
func (n *node) removePods() {
	if _, err := e2eenv.RemoveAllPods(context.Background(), n.berth.Socket); err != nil {
		n.t.Errorf("cleanup: %v", err)
	}
}

// waitFor fails t unless cond holds within timeout.
func (n *node) waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	if err := n.kubelet.WaitFor(t.Context(), timeout, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (n *node) pod(name string) (e2eenv.KubeletPod, string) { return n.kubelet.Pod(name) }

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
