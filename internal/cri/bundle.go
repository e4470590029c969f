package cri

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// makeBundleDir creates a container's bundle directory. Only root may
// enter it, so no host user reaches the container's rootfs (its setuid
// binaries, its files) through it. In a user namespace the runtime reaches
// the rootfs as the namespace's root, an unprivileged host user: then the
// directory's group is that root's host group, which may search it (0710).
// The directories above are searchable by all (0711), as the daemon keeps them.
func makeBundleDir(dir string, gids []specs.LinuxIDMapping) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if len(gids) == 0 {
		return nil
	}
	rootGID, ok := hostID(gids, 0)
	if !ok {
		return fmt.Errorf("bundle %s: the user namespace maps no group 0", dir)
	}
	if err := os.Chown(dir, 0, int(rootGID)); err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	return os.Chmod(dir, 0o710)
}

// hostID is the host ID that id inside a user namespace with maps is.
func hostID(maps []specs.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, m := range maps {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			return m.HostID + id - m.ContainerID, true
		}
	}
	return 0, false
}
