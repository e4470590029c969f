// Package sysinfo reads the host facts that berth adapts to: the cgroup
// version, whether systemd manages the host, and which cgroup driver follows
// from both and the configuration; and which processes run.
package sysinfo

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

// capSysResource is CAP_SYS_RESOURCE's bit in /proc/self/status CapEff.
const capSysResource = 24

// CapabilityBounding returns the daemon's capability bounding set (CapBnd)
// as a bit mask: containers cannot be given capabilities outside it.
func CapabilityBounding() (uint64, error) {
	return capField("CapBnd:")
}

func capField(name string) (uint64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(line, name); ok {
			return strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", name)
}

// OOMScoreAdjFloor returns the daemon's own oom_score_adj when the daemon
// lacks CAP_SYS_RESOURCE: without it the kernel refuses to lower a child's
// value below the parent's, so requests below it must be raised to it. It
// returns nil when the daemon may set any value.
func OOMScoreAdjFloor() (*int, error) {
	caps, err := capField("CapEff:")
	if err != nil {
		return nil, err
	}
	if caps&(1<<capSysResource) != 0 {
		return nil, nil
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return nil, err
	}
	own, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("parse oom_score_adj: %w", err)
	}
	return &own, nil
}

// AppArmorProfiles returns the loaded AppArmor profiles, or nil when the
// host has no AppArmor (module absent or disabled).
func AppArmorProfiles() map[string]bool {
	enabled, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	if err != nil || strings.TrimSpace(string(enabled)) != "Y" {
		return nil
	}
	loaded := map[string]bool{}
	b, err := os.ReadFile("/sys/kernel/security/apparmor/profiles")
	if err != nil {
		return loaded
	}
	for _, line := range strings.Split(string(b), "\n") {
		// "name (mode)"
		if name, _, ok := strings.Cut(line, " ("); ok {
			loaded[name] = true
		}
	}
	return loaded
}

// SELinuxEnabled says whether the host runs SELinux (selinuxfs is mounted).
func SELinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// Processes lists the PIDs of the processes whose /proc/<pid>/<file>
// (cmdline, environ: NUL-separated fields) holds field as a whole field.
func Processes(file, field string) []int {
	paths, _ := filepath.Glob("/proc/[0-9]*/" + file)
	want := []byte("\x00" + field + "\x00")
	var pids []int
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(append(append([]byte{0}, b...), 0), want) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
