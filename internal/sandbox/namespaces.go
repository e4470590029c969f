// Package sandbox makes and unmakes what a pod sandbox owns on the host:
// its network, IPC and UTS namespaces (and, asked for, a user namespace
// owning them), pinned by bind mounts so that no pause process is needed;
// its /etc/hostname, /etc/hosts and
// /etc/resolv.conf; and its /dev/shm.
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/layout"
)

// Kinds of namespace a pod can pin.
const (
	NetNS = "net"
	IPCNS = "ipc"
	UTSNS = "uts"
)

var cloneFlags = map[string]int{NetNS: unix.CLONE_NEWNET, IPCNS: unix.CLONE_NEWIPC, UTSNS: unix.CLONE_NEWUTS}

// pinNamespaces creates new namespaces of the given kinds and bind-mounts
// each onto files[kind], where it lives until unpinned. In a new UTS
// namespace it sets hostname; in a new network namespace it brings lo up.
//
// The work happens on a locked OS thread that unshares itself. The thread
// is never unlocked: when the goroutine ends, the Go runtime terminates it
// rather than return a thread in foreign namespaces to the pool.
func pinNamespaces(files map[string]string, hostname string) error {
	flags, err := cloneFlagsOf(files)
	if err != nil {
		return err
	}
	if err := createPinFiles(files); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- func() error {
			if err := unix.Unshare(flags); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if _, ok := files[UTSNS]; ok && hostname != "" {
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return fmt.Errorf("sethostname %q: %w", hostname, err)
				}
			}
			if _, ok := files[NetNS]; ok {
				if err := loopbackUp(); err != nil {
					return err
				}
			}
			tid := unix.Gettid()
			for kind, path := range files {
				src := fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, kind)
				if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("pin %s namespace: %w", kind, err)
				}
			}
			return nil
		}()
		// Deliberately no UnlockOSThread: see above.
	}()
	if err := <-done; err != nil {
		unpinNamespaces(files)
		return err
	}
	return nil
}

// cloneFlagsOf is the CLONE_NEW* flags that make namespaces of the kinds
// files are for.
func cloneFlagsOf(files map[string]string) (int, error) {
	flags := 0
	for kind := range files {
		f, ok := cloneFlags[kind]
		if !ok {
			return 0, fmt.Errorf("unknown namespace kind %q", kind)
		}
		flags |= f
	}
	return flags, nil
}

// createPinFiles creates the empty files namespaces are bind-mounted on;
// one that exists already is an error (a pod's files are its own).
func createPinFiles(files map[string]string) error {
	for _, path := range files {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
		if err != nil {
			return fmt.Errorf("namespace file: %w", err)
		}
		f.Close()
	}
	return nil
}

// unpinNamespaces unmounts and removes the namespace files; missing ones are
// fine (an interrupted create, a second remove).
func unpinNamespaces(files map[string]string) error {
	var errs []error
	for _, path := range files {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// loopbackUp sets IFF_UP on lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], "lo")
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("get lo flags: %w", errno)
	}
	req.flags |= unix.IFF_UP
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("bring lo up: %w", errno)
	}
	return nil
}

// nsFile is where a pod's namespace of kind is pinned.
func nsFile(dir, kind string) string { return layout.Pod(dir).Namespace(kind) }
