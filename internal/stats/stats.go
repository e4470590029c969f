// Package stats reads a container's resource usage from its cgroup, on
// cgroup v1 (including the hybrid layout) and v2, through
// github.com/containerd/cgroups/v3, and turns cumulative CPU time into the
// usage rate kubelet reports (nano cores) from successive samples.
package stats

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// Sample is one reading of a cgroup.
type Sample struct {
	Time time.Time
	// CPUNanos is cumulative CPU time; NanoCores the rate since the
	// previous sample of the same cgroup (0 for the first).
	CPUNanos  uint64
	NanoCores uint64
	// Memory, bytes: usage, working set (usage minus inactive file pages,
	// kubelet's eviction signal) and anonymous RSS; page faults.
	MemoryUsage, WorkingSet, RSS uint64
	PageFaults, MajorPageFaults  uint64
	Pids                         uint64
}

// ErrNoCgroup means the cgroup does not exist: the container is not running.
var ErrNoCgroup = errors.New("no such cgroup")

// Reader samples cgroups and remembers the last sample of each, for rates.
// Safe for concurrent use.
type Reader struct {
	unified bool

	mu   sync.Mutex
	last map[string]Sample // guarded by mu
}

// NewReader detects the host's cgroup layout once.
func NewReader() *Reader {
	return &Reader{unified: cgroups.Mode() == cgroups.Unified, last: map[string]Sample{}}
}

// Read samples the cgroup at path (a cgroupfs path such as /berth/<id>).
func (r *Reader) Read(cgroupPath string) (Sample, error) {
	var s Sample
	var err error
	if r.unified {
		s, err = readV2(cgroupPath)
	} else {
		s, err = readV1(cgroupPath)
	}
	if err != nil {
		return s, err
	}
	s.Time = time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.last[cgroupPath]; ok && s.Time.After(prev.Time) && s.CPUNanos >= prev.CPUNanos {
		s.NanoCores = uint64(float64(s.CPUNanos-prev.CPUNanos) / s.Time.Sub(prev.Time).Seconds())
	}
	r.last[cgroupPath] = s
	return s, nil
}

// Forget drops the remembered sample of a removed cgroup.
func (r *Reader) Forget(cgroupPath string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, cgroupPath)
}

func readV1(p string) (Sample, error) {
	if _, err := os.Stat(path.Join("/sys/fs/cgroup/memory", p)); errors.Is(err, os.ErrNotExist) {
		return Sample{}, fmt.Errorf("cgroup %s: %w", p, ErrNoCgroup)
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return Sample{}, fmt.Errorf("cgroup %s: %w", p, ErrNoCgroup)
		}
		return Sample{}, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	m, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Sample{}, fmt.Errorf("stat cgroup %s: %w", p, err)
	}
	var s Sample
	if m.CPU != nil && m.CPU.Usage != nil {
		s.CPUNanos = m.CPU.Usage.Total
	}
	if mem := m.Memory; mem != nil {
		if mem.Usage != nil {
			s.MemoryUsage = mem.Usage.Usage
		}
		s.WorkingSet = workingSet(s.MemoryUsage, mem.TotalInactiveFile)
		s.RSS = mem.TotalRSS
		s.PageFaults, s.MajorPageFaults = mem.TotalPgFault, mem.TotalPgMajFault
	}
	if m.Pids != nil {
		s.Pids = m.Pids.Current
	}
	return s, nil
}

func readV2(p string) (Sample, error) {
	if _, err := os.Stat(path.Join("/sys/fs/cgroup", p)); errors.Is(err, os.ErrNotExist) {
		return Sample{}, fmt.Errorf("cgroup %s: %w", p, ErrNoCgroup)
	}
	cg, err := cgroup2.Load(p)
	if err != nil {
		return Sample{}, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	m, err := cg.Stat()
	if err != nil {
		return Sample{}, fmt.Errorf("stat cgroup %s: %w", p, err)
	}
	var s Sample
	if m.CPU != nil {
		s.CPUNanos = m.CPU.UsageUsec * 1000
	}
	if mem := m.Memory; mem != nil {
		s.MemoryUsage = mem.Usage
		s.WorkingSet = workingSet(mem.Usage, mem.InactiveFile)
		s.RSS = mem.Anon
		s.PageFaults, s.MajorPageFaults = mem.Pgfault, mem.Pgmajfault
	}
	if m.Pids != nil {
		s.Pids = m.Pids.Current
	}
	return s, nil
}

// workingSet is usage minus inactive file pages (which the kernel reclaims
// first), kubelet's memory eviction signal; never below zero.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}
