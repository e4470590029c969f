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
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
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
	Detail                       Detail
}

// Detail is the rest of a reading, for the CRI metrics (cAdvisor's).
type Detail struct {
	CPUUserNanos, CPUSystemNanos                       uint64
	CFSPeriods, CFSThrottledPeriods, CFSThrottledNanos uint64
	// Memory, bytes: page cache, mapped files, swap in use, the highest
	// usage seen, kernel memory; failcnt is how often the limit was hit.
	MemoryCache, MemoryMappedFile, MemorySwap, MemoryMaxUsage, MemoryKernel uint64
	MemoryFailcnt                                                           uint64
	OOMKills                                                                uint64
	PidsLimit                                                               uint64 // 0 when unlimited
	Devices                                                                 []DeviceIO
}

// DeviceIO is block I/O to one device.
type DeviceIO struct {
	Major, Minor                         uint64
	ReadBytes, WriteBytes, Reads, Writes uint64
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
	s.Detail = detailV1(m)
	return s, nil
}

func detailV1(m *v1stats.Metrics) Detail {
	var d Detail
	if c := m.CPU; c != nil {
		if c.Usage != nil {
			d.CPUUserNanos, d.CPUSystemNanos = c.Usage.User, c.Usage.Kernel
		}
		if t := c.Throttling; t != nil {
			d.CFSPeriods, d.CFSThrottledPeriods, d.CFSThrottledNanos = t.Periods, t.ThrottledPeriods, t.ThrottledTime
		}
	}
	if mem := m.Memory; mem != nil {
		d.MemoryCache, d.MemoryMappedFile = mem.TotalCache, mem.TotalMappedFile
		if mem.Usage != nil {
			d.MemoryMaxUsage, d.MemoryFailcnt = mem.Usage.Max, mem.Usage.Failcnt
			// memsw counts memory and swap together.
			if mem.Swap != nil && mem.Swap.Usage > mem.Usage.Usage {
				d.MemorySwap = mem.Swap.Usage - mem.Usage.Usage
			}
		}
		if mem.Kernel != nil {
			d.MemoryKernel = mem.Kernel.Usage
		}
	}
	if o := m.MemoryOomControl; o != nil {
		d.OOMKills = o.OomKill
	}
	if p := m.Pids; p != nil {
		d.PidsLimit = p.Limit
	}
	if b := m.Blkio; b != nil {
		devs := map[[2]uint64]*DeviceIO{}
		dev := func(e *v1stats.BlkIOEntry) *DeviceIO {
			k := [2]uint64{e.Major, e.Minor}
			if devs[k] == nil {
				devs[k] = &DeviceIO{Major: e.Major, Minor: e.Minor}
			}
			return devs[k]
		}
		for _, e := range b.IoServiceBytesRecursive {
			switch e.Op {
			case "Read":
				dev(e).ReadBytes = e.Value
			case "Write":
				dev(e).WriteBytes = e.Value
			}
		}
		for _, e := range b.IoServicedRecursive {
			switch e.Op {
			case "Read":
				dev(e).Reads = e.Value
			case "Write":
				dev(e).Writes = e.Value
			}
		}
		for _, v := range devs {
			d.Devices = append(d.Devices, *v)
		}
	}
	return d
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
	s.Detail = detailV2(m)
	return s, nil
}

func detailV2(m *v2stats.Metrics) Detail {
	var d Detail
	if c := m.CPU; c != nil {
		d.CPUUserNanos, d.CPUSystemNanos = c.UserUsec*1000, c.SystemUsec*1000
		d.CFSPeriods, d.CFSThrottledPeriods, d.CFSThrottledNanos = c.NrPeriods, c.NrThrottled, c.ThrottledUsec*1000
	}
	if mem := m.Memory; mem != nil {
		d.MemoryCache, d.MemoryMappedFile = mem.File, mem.FileMapped
		d.MemorySwap = mem.SwapUsage
		d.MemoryMaxUsage = mem.MaxUsage
		d.MemoryKernel = mem.KernelStack + mem.Slab
	}
	if e := m.MemoryEvents; e != nil {
		d.MemoryFailcnt, d.OOMKills = e.Max, e.OomKill
	}
	if p := m.Pids; p != nil {
		d.PidsLimit = p.Limit
	}
	if io := m.Io; io != nil {
		for _, e := range io.Usage {
			d.Devices = append(d.Devices, DeviceIO{Major: e.Major, Minor: e.Minor, ReadBytes: e.Rbytes, WriteBytes: e.Wbytes, Reads: e.Rios, Writes: e.Wios})
		}
	}
	return d
}

// workingSet is usage minus inactive file pages (which the kernel reclaims
// first), kubelet's memory eviction signal; never below zero.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}
