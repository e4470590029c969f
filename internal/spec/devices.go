package spec

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// denyAllDevices starts every container's device cgroup rules: nothing but
// what is allowed after it (runc adds the standard /dev/null, /dev/zero …).
var denyAllDevices = specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}

// devices returns a container's device nodes and device cgroup rules: the
// CRI devices, or for a privileged container every device of the host.
func devices(cfg *runtime.ContainerConfig, privileged bool) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	if privileged {
		nodes, err := hostDevices()
		if err != nil {
			return nil, nil, err
		}
		return nodes, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, nil
	}
	var nodes []specs.LinuxDevice
	rules := []specs.LinuxDeviceCgroup{denyAllDevices}
	for i, d := range cfg.GetDevices() {
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return nil, nil, fmt.Errorf("devices[%d].permissions %q: only r, w and m: %w", i, perms, errdefs.ErrInvalidArgument)
		}
		dst := d.GetContainerPath()
		if !filepath.IsAbs(dst) {
			return nil, nil, fmt.Errorf("devices[%d].container_path %q must be absolute: %w", i, dst, errdefs.ErrInvalidArgument)
		}
		found, err := devicesAt(d.GetHostPath(), filepath.Clean(dst))
		if err != nil {
			return nil, nil, fmt.Errorf("devices[%d].host_path: %w", i, err)
		}
		for _, n := range found {
			nodes = append(nodes, n)
			major, minor := n.Major, n.Minor
			rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: n.Type, Major: &major, Minor: &minor, Access: perms})
		}
	}
	return nodes, rules, nil
}

// devicesAt is the device at host (symlinks followed) as dst, or each
// device under a host directory, below dst.
func devicesAt(host, dst string) ([]specs.LinuxDevice, error) {
	fi, err := os.Stat(host)
	if err != nil {
		return nil, fmt.Errorf("%q: %v: %w", host, err, errdefs.ErrInvalidArgument)
	}
	if !fi.IsDir() {
		n, ok := deviceNode(host, dst)
		if !ok {
			return nil, fmt.Errorf("%q is not a device: %w", host, errdefs.ErrInvalidArgument)
		}
		return []specs.LinuxDevice{n}, nil
	}
	// A directory of devices lives under /dev (/dev/snd, /dev/dri); any
	// other would have the daemon walk the host's file system.
	if real, err := filepath.EvalSymlinks(host); err != nil || (real != "/dev" && !strings.HasPrefix(real, "/dev/")) {
		return nil, fmt.Errorf("%q is a directory outside /dev: %w", host, errdefs.ErrInvalidArgument)
	}
	var out []specs.LinuxDevice
	err = filepath.WalkDir(host, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(host, p)
		if n, ok := deviceNode(p, filepath.Join(dst, rel)); ok {
			out = append(out, n)
		}
		return nil
	})
	return out, err
}

// hostDevices are the device nodes under the host's /dev, for a privileged
// container (the ones its own /dev mounts provide are left out).
func hostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // a node that went away, an unreadable directory
		}
		if e.IsDir() {
			switch p {
			case "/dev/pts", "/dev/shm", "/dev/mqueue":
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type()&fs.ModeSymlink != 0 || p == "/dev/console" || p == "/dev/ptmx" {
			return nil
		}
		if n, ok := deviceNode(p, p); ok {
			out = append(out, n)
		}
		return nil
	})
	return out, err
}

func deviceNode(host, dst string) (specs.LinuxDevice, bool) {
	var st unix.Stat_t
	if err := unix.Stat(host, &st); err != nil {
		return specs.LinuxDevice{}, false
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, false
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path: dst, Type: typ,
		Major: int64(unix.Major(uint64(st.Rdev))), Minor: int64(unix.Minor(uint64(st.Rdev))),
		FileMode: &mode, UID: &uid, GID: &gid,
	}, true
}
