package sandbox

import (
	"fmt"
	"os"
	goruntime "runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// UserNS is the kind of a pod's own user namespace.
const UserNS = "user"

// pinInUserNamespace creates a user namespace with the given mappings and,
// owned by it, new namespaces of the kinds in files; it pins all of them
// (the user namespace on userFile). Namespaces a container joins inside its
// user namespace must be owned by it: a network namespace of the host's
// user namespace could not be joined, nor sysfs mounted in it.
//
// A multithreaded process cannot unshare a user namespace, so a child is
// cloned into the new namespaces and, traced, stops at its execve without
// running anything; its namespaces are bind-mounted and it is killed.
func pinInUserNamespace(files map[string]string, userFile string, uids, gids []specs.LinuxIDMapping, hostname string) (retErr error) {
	flags, err := cloneFlagsOf(files)
	if err != nil {
		return err
	}
	all := map[string]string{UserNS: userFile}
	for kind, path := range files {
		all[kind] = path
	}
	if err := createPinFiles(all); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			unpinNamespaces(all)
		}
	}()

	// Pdeathsig and the tracing belong to the forking thread: were it to
	// end (Go ends threads that goroutines leave locked) before the pins
	// are made, the child would die or run on.
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	// The argument is no command of berth's: should the child ever run, it
	// exits at once.
	proc, err := os.StartProcess("/proc/self/exe", []string{"berth", "userns-holder"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Cloneflags:                 uintptr(flags | unix.CLONE_NEWUSER),
		UidMappings:                sysMaps(uids),
		GidMappings:                sysMaps(gids),
		GidMappingsEnableSetgroups: true, // containers set their groups
		Ptrace:                     true, // stop at execve: nothing runs
		Pdeathsig:                  syscall.SIGKILL,
	}})
	if err != nil {
		return fmt.Errorf("clone into a new user namespace: %w", err)
	}
	defer func() {
		_ = proc.Kill()
		_, _ = proc.Wait()
	}()
	for kind, path := range all {
		src := fmt.Sprintf("/proc/%d/ns/%s", proc.Pid, kind)
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin %s namespace: %w", kind, err)
		}
	}
	return setUpPinned(files, hostname)
}

// setUpPinned sets the hostname in a pinned UTS namespace and brings lo up
// in a pinned network namespace, from a thread that joins them (the host's
// root may enter namespaces owned by any user namespace). The thread is
// never unlocked, so the Go runtime ends it instead of reusing it.
func setUpPinned(files map[string]string, hostname string) error {
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		done <- func() error {
			if path, ok := files[UTSNS]; ok && hostname != "" {
				if err := setns(path, unix.CLONE_NEWUTS); err != nil {
					return err
				}
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return fmt.Errorf("sethostname %q: %w", hostname, err)
				}
			}
			if path, ok := files[NetNS]; ok {
				if err := setns(path, unix.CLONE_NEWNET); err != nil {
					return err
				}
				return loopbackUp()
			}
			return nil
		}()
	}()
	return <-done
}

func setns(path string, kind int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, kind); err != nil {
		return fmt.Errorf("join namespace %s: %w", path, err)
	}
	return nil
}

func sysMaps(maps []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(maps))
	for i, m := range maps {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}
