// Package check verifies the host prerequisites berth needs and says how to
// fix what is missing. `berth check` prints its report.
package check

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containernetworking/cni/pkg/invoke"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/criu"
	"github.com/berth-cri/berth/internal/ociruntime"
	"github.com/berth-cri/berth/internal/sysinfo"
)

// Result is one check's outcome.
type Result struct {
	Name   string
	OK     bool
	Detail string // what was found
	Fix    string // how to fix it, when not OK
	// Optional marks a check whose failure only limits berth (a handler
	// other than the default: pods asking for it are refused), so it
	// does not fail the report.
	Optional bool
}

// requiredCNIPlugins are the plugins berth's default network uses.
var requiredCNIPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// Run performs every check against cfg.
func Run(ctx context.Context, cfg config.Config) []Result {
	// Every RuntimeClass handler's runtime, the default first.
	var results []Result
	names := []string{cfg.Runtime.DefaultHandler}
	for name := range cfg.Runtime.Handlers {
		if name != cfg.Runtime.DefaultHandler {
			names = append(names, name)
		}
	}
	slices.Sort(names[1:])
	for _, name := range names {
		// The runtime the daemon would run for this handler.
		choice := ociruntime.Choose(ctx, cfg.Runtime.Handlers[name])
		path := choice.Path
		fix := "apt-get install " + filepath.Base(path)
		if filepath.IsAbs(path) {
			fix = "install the runtime at " + path + " (make deps builds runc-upstream's)"
		}
		r := checkBinary(ctx, path, []string{"--version"}, fix)
		r.Name = "handler " + name
		r.Optional = name != cfg.Runtime.DefaultHandler
		if r.OK {
			r.Detail += "; user namespaces: " + yesNo(choice.Features.UserNamespaces)
			if choice.Replaced != "" {
				r.Detail += fmt.Sprintf("; its userns_path, instead of %s (no user namespaces)", choice.Replaced)
			}
		}
		results = append(results, r)
	}
	return append(results,
		checkCNIPlugins(cfg.CNI.BinDirs),
		checkOverlay(),
		checkSnapshotter(cfg.Root, cfg.Image.Snapshotter),
		checkCgroups(cfg.Runtime.CgroupDriver),
		checkBinary(ctx, "iptables", []string{"--version"}, "apt-get install iptables (the portmap CNI plugin needs it)"),
		checkCRIU(ctx, cfg.Checkpoint.CRIUPath),
	)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Print writes the report and returns whether every check passed.
func Print(w io.Writer, results []Result) bool {
	ok := true
	for _, r := range results {
		mark := "ok     "
		switch {
		case !r.OK && r.Optional:
			mark = "absent "
		case !r.OK:
			mark = "MISSING"
			ok = false
		}
		fmt.Fprintf(w, "%s  %-12s %s\n", mark, r.Name, r.Detail)
		if !r.OK && r.Fix != "" {
			fmt.Fprintf(w, "         %-12s fix: %s\n", "", r.Fix)
		}
	}
	return ok
}

func checkBinary(ctx context.Context, name string, versionArgs []string, fix string) Result {
	path, err := exec.LookPath(name)
	if err != nil {
		where := "not found in PATH"
		if filepath.IsAbs(name) {
			where = name + " not found"
		}
		return Result{Name: name, Detail: where, Fix: fix}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, versionArgs...).CombinedOutput()
	if err != nil {
		return Result{Name: name, Detail: fmt.Sprintf("%s does not run: %v", path, err), Fix: fix}
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return Result{Name: name, OK: true, Detail: fmt.Sprintf("%s (%s)", path, first)}
}

// checkCRIU reports whether checkpointing could run. Optional: only
// CheckpointContainer needs it.
func checkCRIU(ctx context.Context, path string) Result {
	r := Result{Name: "criu", Optional: true}
	bin, err := criu.Check(ctx, path)
	if err != nil {
		r.Detail = err.Error() + "; CheckpointContainer answers FailedPrecondition"
		r.Fix = "apt-get install criu, on a kernel its check accepts"
		return r
	}
	r.OK, r.Detail = true, bin+" (criu check passed)"
	return r
}

func checkCNIPlugins(binDirs []string) Result {
	r := Result{Name: "cni-plugins"}
	var missing []string
	for _, p := range requiredCNIPlugins {
		if _, err := invoke.FindInPath(p, binDirs); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		r.Detail = fmt.Sprintf("%s not found in %s", strings.Join(missing, ", "), strings.Join(binDirs, ":"))
		r.Fix = "apt-get install containernetworking-plugins, or set cni.bin_dirs"
		return r
	}
	r.OK = true
	r.Detail = fmt.Sprintf("%s in %s", strings.Join(requiredCNIPlugins, ", "), strings.Join(binDirs, ":"))
	return r
}

func checkOverlay() Result {
	r := Result{Name: "overlayfs"}
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 0 && fields[len(fields)-1] == "overlay" {
			r.OK = true
			r.Detail = "overlay filesystem available"
			return r
		}
	}
	r.Detail = "overlay not in /proc/filesystems"
	r.Fix = "modprobe overlay (berth falls back to the slower native snapshotter without it)"
	return r
}

// checkSnapshotter mounts a throwaway overlay under root, where the
// snapshots will live: overlay in /proc/filesystems is not enough when the
// root's file system cannot be an upper layer (overlay on overlay, some
// network file systems).
func checkSnapshotter(root, snapshotter string) Result {
	r := Result{Name: "snapshotter"}
	if snapshotter != "overlayfs" {
		r.OK = true
		r.Detail = fmt.Sprintf("%s (image.snapshotter)", snapshotter)
		return r
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		r.Detail = err.Error()
		return r
	}
	dir, err := os.MkdirTemp(root, "check-overlay-")
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			r.Detail = err.Error()
			return r
		}
	}
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir)
	if err := unix.Mount("overlay", filepath.Join(dir, "merged"), "overlay", 0, opts); err != nil {
		r.Detail = fmt.Sprintf("cannot mount overlay under %s: %v", root, err)
		r.Fix = `set image.snapshotter = "native" in the config (slower, full copies), or put --root on ext4/xfs`
		return r
	}
	_ = unix.Unmount(filepath.Join(dir, "merged"), 0)
	r.OK = true
	r.Detail = fmt.Sprintf("overlayfs works under %s", root)
	return r
}

func checkCgroups(configuredDriver string) Result {
	r := Result{Name: "cgroups"}
	v, err := sysinfo.CgroupVersion()
	if err != nil {
		r.Detail = err.Error()
		r.Fix = "mount cgroup2 or the cgroup v1 controllers at /sys/fs/cgroup"
		return r
	}
	driver := sysinfo.CgroupDriver(configuredDriver)
	r.Detail = fmt.Sprintf("cgroup v%d, driver %s", v, driver)
	if b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && v == 1 && len(strings.TrimSpace(string(b))) > 0 {
		r.Detail += "; controllers on the unified hierarchy: " + strings.TrimSpace(string(b))
		r.Fix = "crun refuses this hybrid layout: mount each as v1, e.g. mkdir /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb (hack/install-deps.sh does)"
		return r
	}
	if driver == "systemd" && !sysinfo.SystemdRunning() {
		r.Fix = "runtime.cgroup_driver is systemd but systemd does not run here; set it to cgroupfs"
		return r
	}
	r.OK = true
	return r
}
