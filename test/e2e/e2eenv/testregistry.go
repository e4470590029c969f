package e2eenv

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-cri/berth/test/e2e/testimages"
)

// TestRegistry is a loopback registry serving every test image, with a
// hosts.toml directory that mirrors the upstream registries to it.
type TestRegistry struct {
	*Registry
	HostsDir string
	Images   []testimages.Image
	// BuildTime is how long building and pushing the images took.
	BuildTime time.Duration
}

// ServeTestImages builds the test images from Debian's busybox (cached in
// cache) and testbin, pushes them to a new loopback registry, and writes
// hostsDir.
func ServeTestImages(ctx context.Context, cache, testbin, hostsDir string) (*TestRegistry, error) {
	start := time.Now()
	bb, err := testimages.ExtractBusybox(ctx, cache)
	if err != nil {
		return nil, err
	}
	images, err := testimages.Build(ctx, testimages.Sources{BusyboxRoot: bb, Testbin: testbin})
	if err != nil {
		return nil, err
	}
	reg, err := StartRegistry()
	if err != nil {
		return nil, err
	}
	if err := testimages.Push(ctx, reg.Host, images); err != nil {
		reg.Close()
		return nil, fmt.Errorf("push test images: %w", err)
	}
	if err := WriteHostsDir(hostsDir, reg.Host, testimages.MirroredHosts); err != nil {
		reg.Close()
		return nil, err
	}
	return &TestRegistry{Registry: reg, HostsDir: hostsDir, Images: images, BuildTime: time.Since(start)}, nil
}
