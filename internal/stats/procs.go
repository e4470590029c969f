package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
)

// Processes counts what the processes of a cgroup hold: processes, their
// threads, open file descriptors and, of those, sockets.
type Processes struct {
	Processes, Threads, FileDescriptors, Sockets uint64
}

// CountProcesses reads the cgroup's member processes from cgroup.procs
// (the pids controller's on v1) and their /proc entries. A process that
// exits meanwhile is skipped.
func (r *Reader) CountProcesses(cgroupPath string) (Processes, error) {
	file := path.Join("/sys/fs/cgroup", cgroupPath, "cgroup.procs")
	if !r.unified {
		file = path.Join("/sys/fs/cgroup/pids", cgroupPath, "cgroup.procs")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return Processes{}, fmt.Errorf("processes of cgroup %s: %w", cgroupPath, err)
	}
	var p Processes
	for _, pid := range strings.Fields(string(b)) {
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		threads, ok := threadCount("/proc/" + pid + "/status")
		if !ok {
			continue
		}
		p.Processes++
		p.Threads += threads
		fds, err := os.ReadDir("/proc/" + pid + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			p.FileDescriptors++
			if target, err := os.Readlink("/proc/" + pid + "/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:") {
				p.Sockets++
			}
		}
	}
	return p, nil
}

func threadCount(statusFile string) (uint64, bool) {
	b, err := os.ReadFile(statusFile)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
