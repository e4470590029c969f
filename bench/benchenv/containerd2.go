package benchenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Containerd2Version is the containerd 2.x benchmarks compare with when
// Debian's 1.6 is not the point (../shared/notes/containerd2-anchor.md).
const Containerd2Version = "v2.4.2"

// EnsureContainerd2 builds containerd and its runc shim from the Go module
// proxy into <cache>/containerd-<version>/, once (about 1.5 minutes), and
// returns that directory.
func EnsureContainerd2(ctx context.Context, cache string) (string, error) {
	dir := filepath.Join(cache, "containerd-"+Containerd2Version)
	if _, err := os.Stat(filepath.Join(dir, "containerd-shim-runc-v2")); err == nil {
		return dir, nil
	}
	fmt.Fprintf(os.Stderr, "benchenv: building containerd %s (once)\n", Containerd2Version)
	tmp, err := os.MkdirTemp(cache, "containerd-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install",
		"github.com/containerd/containerd/v2/cmd/containerd@"+Containerd2Version,
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@"+Containerd2Version)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-buildvcs=false")
	cmd.Dir = cache
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install containerd %s: %v\n%s", Containerd2Version, err, out)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.Rename(tmp, dir)
}

// StartContainerd2 runs the containerd 2.x in binDir with a private root,
// state and sockets: its CRI plugins read the same hosts.toml directory and
// CNI config as berth and run runcPath, pause:3.10 (from the test registry)
// as every pod's infra container. NRI serves plugins on its NRISocket.
func StartContainerd2(ctx context.Context, binDir, dir, hosts, cniConfDir, runcPath string) (*Containerd, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	socket := filepath.Join(dir, "containerd.sock")
	// Its own NRI socket (NRI is on by default in 2.x), never the host's.
	nriSocket := filepath.Join(dir, "nri.sock")
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = %q
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "registry.k8s.io/pause:3.10"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %q
[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = %q
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %q
    max_conf_num = 1
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, filepath.Join(dir, "ttrpc.sock"),
		filepath.Join(dir, "debug.sock"), hosts, runcPath, cniConfDir, nriSocket)
	// Its own shim first: Debian's containerd package ships a 1.6 one.
	c, err := runContainerd(ctx, filepath.Join(binDir, "containerd"), dir, socket, cfg, []string{"PATH=" + binDir + ":" + os.Getenv("PATH")})
	if err != nil {
		return nil, err
	}
	c.NRISocket = nriSocket
	return c, nil
}
