package spec

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// checkPropagation refuses a volume whose propagation cannot work from
// where its source is mounted on the host: bidirectional needs a shared
// mount, host-to-container a shared or slave one (as kubelet expects of
// every runtime).
func checkPropagation(src string, p runtime.MountPropagation) error {
	if p != runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL && p != runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER {
		return nil
	}
	m, err := mountOf(src)
	if err != nil {
		return err
	}
	shared := strings.Contains(m.Optional, "shared:")
	slave := strings.Contains(m.Optional, "master:")
	switch {
	case p == runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL && !shared:
		return fmt.Errorf("%q is on mount %q, which is not shared, so mounts made in the container would not reach the host: %w", src, m.Mountpoint, errdefs.ErrFailedPrecondition)
	case p == runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER && !shared && !slave:
		return fmt.Errorf("%q is on mount %q, which is neither shared nor slave, so host mounts would not reach the container: %w", src, m.Mountpoint, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// mountOf is the mount that path (symlinks resolved) is on: the one with
// the longest mount point that contains it, the last such when stacked.
func mountOf(path string) (*mountinfo.Info, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if !within(path, m.Mountpoint) {
			continue
		}
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount holds %q", path)
	}
	return best, nil
}

func within(path, dir string) bool {
	if dir == "/" {
		return true
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
