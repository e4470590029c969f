// Package benchenv starts what benchmarks compare berth with: containerd
// from Debian's package, configured like berth (same mirrors, same CNI).
package benchenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// Containerd is a running containerd.
type Containerd struct {
	cmd    *exec.Cmd
	Socket string
	// NRISocket is where NRI plugins connect (containerd 2.x; "" for 1.6).
	NRISocket string
}

// StartContainerd runs containerd (Debian's 1.6) with a private root, state
// and socket, its CRI plugin reading the same hosts.toml directory as berth
// and, when cniConfDir is set, the same CNI config (plugins from /usr/lib/cni).
func StartContainerd(ctx context.Context, bin, dir, hosts, cniConfDir string) (*Containerd, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if cniConfDir == "" {
		cniConfDir = filepath.Join(dir, "net.d-empty")
	}
	socket := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, hosts, cniConfDir)
	return runContainerd(ctx, bin, dir, socket, cfg, nil)
}

// runContainerd writes cfg as dir's config.toml, starts bin on it (env
// added to this process's environment), its output in dir/containerd.log,
// and waits until it serves CRI on socket.
func runContainerd(ctx context.Context, bin, dir, socket, cfg string, env []string) (*Containerd, error) {
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	c := &Containerd{cmd: cmd, Socket: socket}
	if err := c.waitServing(ctx, logf.Name()); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// waitServing polls until containerd answers CRI Version (it has no
// readiness signal of its own), for up to 30 s.
func (c *Containerd) waitServing(ctx context.Context, logPath string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := e2eenv.Dial(c.Socket)
		if err == nil {
			_, err = runtime.NewRuntimeServiceClient(conn).Version(ctx, &runtime.VersionRequest{}, grpc.WaitForReady(false))
			conn.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not serve CRI within 30s: %v (log: %s)", err, logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pid is containerd's process ID.
func (c *Containerd) Pid() int { return c.cmd.Process.Pid }

// Stop ends containerd.
func (c *Containerd) Stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
}
