package e2eenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Leaks lists what berth left under dir that it should have removed: mounts
// (namespace pins, /dev/shm, container root file systems) and monitor
// processes serving sockets there. Empty means clean.
func Leaks(dir string) ([]string, error) {
	var leaks []string
	mounts, err := mountsUnder(dir)
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		leaks = append(leaks, "mount "+m)
	}
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "berth-monitor") && strings.Contains(cmd, dir+"/") {
			leaks = append(leaks, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), cmd))
		}
	}
	return leaks, nil
}

// mountsUnder lists the mount points below dir, in mount order.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out, nil
}
