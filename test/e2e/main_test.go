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
	"sync"
	"testing"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
	"github.com/berth-cri/berth/test/e2e/testimages"
)

// The binaries under test, built by TestMain into one directory (or taken
// from $BERTH_BIN_DIR, where `make` put them): berth, berth-monitor next to
// it (where the daemon looks for it), and the static testbin for images.
var berthBinary, monitorBinary, testbinBinary, nriPluginBinary string

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
	dir := os.Getenv("BERTH_BIN_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "berth-e2e-bin-"); err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		for _, b := range []struct{ name, pkg string }{
			{"berth", "../../cmd/berth"},
			{"berth-monitor", "../../cmd/berth-monitor"},
			{"testbin", "./testbin"},
			{"nriplugin", "./nriplugin"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.name), b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("build %s: %v\n%s", b.name, err, out)
			}
		}
		cmd := exec.Command("gcc", "-Os", "-static", "-nostdlib", "-fno-stack-protector", "-s",
			"-o", filepath.Join(dir, "berth-pause"), "../../cmd/berth-pause/pause.c")
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("build berth-pause: %v\n%s", err, out)
		}
	}
	berthBinary = filepath.Join(dir, "berth")
	monitorBinary = filepath.Join(dir, "berth-monitor")
	testbinBinary = filepath.Join(dir, "testbin")
	nriPluginBinary = filepath.Join(dir, "nriplugin")
	return m.Run(), nil
}

// e2eCache is where the harness caches the busybox package and tools.
func e2eCache() string {
	if c := os.Getenv("BERTH_E2E_CACHE"); c != "" {
		return c
	}
	return "/var/cache/berth-e2e"
}

var (
	testImagesOnce sync.Once
	testImagesList []testimages.Image
	testImagesErr  error
)

// testImages builds the critest image catalogue once per test binary.
func testImages(t *testing.T) []testimages.Image {
	t.Helper()
	testImagesOnce.Do(func() {
		bb, err := testimages.ExtractBusybox(context.Background(), e2eCache())
		if err != nil {
			testImagesErr = err
			return
		}
		testImagesList, testImagesErr = testimages.Build(context.Background(), testimages.Sources{BusyboxRoot: bb, Testbin: testbinBinary})
	})
	if testImagesErr != nil {
		t.Fatal(testImagesErr)
	}
	return testImagesList
}

// busyboxRootfs unpacks the busybox test image into dir.
func busyboxRootfs(t *testing.T, dir string) {
	t.Helper()
	for _, img := range testImages(t) {
		if img.Refs[0] == "registry.k8s.io/e2e-test-images/busybox:1.29-2" {
			if err := testimages.Unpack(img.Image, dir); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("busybox test image not in the catalogue")
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
