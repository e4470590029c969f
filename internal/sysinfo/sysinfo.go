// Package sysinfo reads the host facts that berth adapts to: the cgroup
// version, whether systemd manages the host, and which cgroup driver follows
// from both and the configuration.
package sysinfo

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CgroupVersion is 1 for cgroup v1 (including the hybrid layout) and 2 for the
// unified hierarchy.
func CgroupVersion() (int, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return 0, fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return 2, nil
	}
	return 1, nil
}

// SystemdRunning reports whether systemd is the host's init, the test
// sd_booted(3) uses.
func SystemdRunning() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// CgroupDriver resolves the configured driver: "" means systemd where systemd
// runs and cgroupfs elsewhere.
func CgroupDriver(configured string) string {
	if configured != "" {
		return configured
	}
	if SystemdRunning() {
		return "systemd"
	}
	return "cgroupfs"
}
