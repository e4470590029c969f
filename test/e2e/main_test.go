// Package e2e drives a real berth daemon through its gRPC socket. The tests
// need root (real namespaces, mounts and runc in later layers); they build
// the berth binary once in TestMain.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// berthBinary is the binary under test, built by TestMain (or given in
// $BERTH_BINARY).
var berthBinary string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "test/e2e: these tests run berth for real and need root; run them as root (make e2e)")
		os.Exit(1)
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	berthBinary = os.Getenv("BERTH_BINARY")
	if berthBinary == "" {
		dir, err := os.MkdirTemp("", "berth-e2e-bin-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		berthBinary = filepath.Join(dir, "berth")
		out, err := exec.Command("go", "build", "-o", berthBinary, "../../cmd/berth").CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("build berth: %v\n%s", err, out)
		}
	}
	return m.Run(), nil
}

// startDaemon starts berth in a fresh directory with a loadable CNI config
// and stops it when the test ends.
func startDaemon(t *testing.T, opts e2eenv.DaemonOptions) *e2eenv.Daemon {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = berthBinary
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.CNIConfDir == "" {
		opts.CNIConfDir = filepath.Join(opts.Dir, "net.d")
		if err := e2eenv.WriteCNIConfig(opts.CNIConfDir); err != nil {
			t.Fatal(err)
		}
	}
	if opts.CNIBinDirs == nil {
		opts.CNIBinDirs = []string{"/usr/lib/cni"}
	}
	d, err := e2eenv.StartDaemon(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-d.Exited():
		default:
			if err := d.Stop(); err != nil {
				t.Errorf("stop berth: %v", err)
			}
		}
	})
	return d
}
