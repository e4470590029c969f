// Package layout is where berth keeps things on disk: the one place that
// spells the state directory's layout and a bundle's, for the daemon and
// the per-pod monitor alike (standard library only: the monitor links it).
//
//	<state>/
//	  pods/<pod id>/          a pod: ns/<kind> pinned namespaces, config.pb,
//	                          monitor.log, /etc files, shm
//	  containers/<id>/        a container's OCI bundle (Bundle)
//	  pause/<pod id>/         the bundle of a pod's pause container
//	  mon/<id[:16]>.sock      a pod's monitor socket
//	  runtimes/<handler>/     each runtime handler's --root
package layout

import "path/filepath"

// State is the daemon's --state directory.
type State string

// Pods is the directory of every pod's directory.
func (s State) Pods() string { return filepath.Join(string(s), "pods") }

// Pod is the directory of pod id.
func (s State) Pod(id string) Pod { return Pod(filepath.Join(s.Pods(), id)) }

// Containers is the directory of every container's bundle.
func (s State) Containers() string { return filepath.Join(string(s), "containers") }

// Container is the bundle of container id.
func (s State) Container(id string) Bundle { return Bundle(filepath.Join(s.Containers(), id)) }

// Pauses is the directory of every pause container's bundle.
func (s State) Pauses() string { return filepath.Join(string(s), "pause") }

// Pause is the bundle of pod podID's pause container.
func (s State) Pause(podID string) Bundle { return Bundle(filepath.Join(s.Pauses(), podID)) }

// MonitorSocket is the socket pod podID's monitor serves. It is short on
// purpose: unix socket paths are limited to 108 bytes, and the state
// directory may already be long.
func (s State) MonitorSocket(podID string) string {
	return filepath.Join(string(s), "mon", podID[:min(16, len(podID))]+".sock")
}

// RuntimeRoot is the --root of runtime handler name.
func (s State) RuntimeRoot(name string) string { return filepath.Join(string(s), "runtimes", name) }

// Pod is a pod's directory.
type Pod string

// Dir is the directory itself.
func (p Pod) Dir() string { return string(p) }

// Namespaces holds the pod's pinned namespaces.
func (p Pod) Namespaces() string { return filepath.Join(string(p), "ns") }

// Namespace is the pinned namespace of kind (net, ipc, uts, user).
func (p Pod) Namespace(kind string) string { return filepath.Join(p.Namespaces(), kind) }

// Config holds the pod's CRI config (protobuf) from before CNI ADD until
// the pod is removed: recovery detaches a half-made pod with it.
func (p Pod) Config() string { return filepath.Join(string(p), "config.pb") }

// MonitorLog is the pod monitor's own log (its stderr).
func (p Pod) MonitorLog() string { return filepath.Join(string(p), "monitor.log") }

// Bundle is an OCI bundle directory.
type Bundle string

// Dir is the directory itself.
func (b Bundle) Dir() string { return string(b) }

// Spec is the bundle's OCI runtime spec.
func (b Bundle) Spec() string { return filepath.Join(string(b), "config.json") }

// Rootfs is where the container's root filesystem is mounted.
func (b Bundle) Rootfs() string { return filepath.Join(string(b), "rootfs") }

// Exit is the monitor's record of how the container exited, written
// atomically before the exit is reported anywhere.
func (b Bundle) Exit() string { return filepath.Join(string(b), "exit.json") }

// RuntimeLog is the runtime's log of the container's start.
func (b Bundle) RuntimeLog() string { return filepath.Join(string(b), "runc.log") }

// InitPid is the file the runtime writes the container's init PID to.
func (b Bundle) InitPid() string { return filepath.Join(string(b), "init.pid") }

// ExecDirPattern names (os.MkdirTemp) the per-exec directories in a bundle.
const ExecDirPattern = "exec-"
