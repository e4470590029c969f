package store

import (
	"fmt"
	"time"
)

// Sandbox is a pod sandbox as berth records it. Fields other than State and
// the timestamps are fixed at creation.
type Sandbox struct {
	ID             string            `json:"id"`
	Metadata       PodMetadata       `json:"metadata"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	RuntimeHandler string            `json:"runtime_handler,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
	// Ready is true from a successful RunPodSandbox until StopPodSandbox.
	Ready bool `json:"ready"`
	// Config is the CRI PodSandboxConfig, protobuf-encoded.
	Config []byte       `json:"config,omitempty"`
	Paths  SandboxPaths `json:"paths"`
	// CgroupParent is the pod's cgroup, as containers' cgroupsPath uses it.
	CgroupParent string `json:"cgroup_parent,omitempty"`
	// MonitorSocket and MonitorPid locate the pod's monitor process.
	MonitorSocket string `json:"monitor_socket,omitempty"`
	MonitorPid    int    `json:"monitor_pid,omitempty"`
	// PausePid is the init of the pod's shared PID namespace (0 unless
	// namespace_options.pid is POD, or the pause container); a child of the
	// monitor.
	PausePid int `json:"pause_pid,omitempty"`
	// PauseContainer says the pod runs the sandbox image as an infra
	// container (runtime.pause_container); PausePid is then its PID.
	PauseContainer bool `json:"pause_container,omitempty"`
	// NetworkAttached is true from a successful CNI ADD until its DEL; IPs
	// are the pod's addresses, IPv4 first.
	NetworkAttached bool     `json:"network_attached,omitempty"`
	IPs             []string `json:"ips,omitempty"`
}

// SandboxPaths are the host paths a sandbox made (see internal/sandbox). A
// namespace path is empty where the pod uses the host's namespace.
type SandboxPaths struct {
	Dir        string `json:"dir"`
	NetNS      string `json:"netns,omitempty"`
	IPCNS      string `json:"ipcns,omitempty"`
	UTSNS      string `json:"utsns,omitempty"`
	UserNS     string `json:"userns,omitempty"`
	Hostname   string `json:"hostname,omitempty"`
	Hosts      string `json:"hosts,omitempty"`
	ResolvConf string `json:"resolv_conf,omitempty"`
	Shm        string `json:"shm,omitempty"`
}

// PodMetadata mirrors the CRI PodSandboxMetadata.
type PodMetadata struct {
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Attempt   uint32 `json:"attempt"`
}

// Key implements Record.
func (s Sandbox) Key() string { return s.ID }

// UniqueName implements Record: kubelet may not run two sandboxes with the
// same name, namespace, UID and attempt.
func (s Sandbox) UniqueName() string {
	m := s.Metadata
	return fmt.Sprintf("%s_%s_%s_%d", m.Name, m.Namespace, m.UID, m.Attempt)
}

// Container is a container as berth records it.
//
// Its state is derived from the timestamps (see State), so that a crash can
// never leave a state that disagrees with them:
//
//	CREATED --start--> RUNNING --exit--> EXITED
//	   |                                   ^
//	   +------------- start failed --------+
type Container struct {
	ID          string            `json:"id"`
	SandboxID   string            `json:"sandbox_id"`
	Metadata    ContainerMetadata `json:"metadata"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Image is the image spec the container was created with; ImageID the
	// resolved image's ID.
	Image   string `json:"image"`
	ImageID string `json:"image_id,omitempty"`
	// LogPath is the CRI log_path as given (relative to the pod's log
	// directory); LogFile the resolved host path ("" for no log).
	LogPath string `json:"log_path,omitempty"`
	LogFile string `json:"log_file,omitempty"`
	// Config is the CRI ContainerConfig, protobuf-encoded.
	Config []byte `json:"config,omitempty"`
	// Bundle is the OCI bundle directory (config.json, rootfs mount point,
	// the monitor's exit record); SnapshotKey names its writable snapshot.
	Bundle      string `json:"bundle"`
	SnapshotKey string `json:"snapshot_key"`
	// StopSignal is the image's STOPSIGNAL ("" for SIGTERM).
	StopSignal string `json:"stop_signal,omitempty"`
	Pid        int    `json:"pid,omitempty"`
	// CgroupsPath is the spec's linux.cgroupsPath (stats read it).
	CgroupsPath string `json:"cgroups_path,omitempty"`
	// User is the spec's process user, which ContainerStatus reports (nil in
	// records written before it was kept: read from the spec then).
	User *ContainerUser `json:"user,omitempty"`

	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ExitCode   int32     `json:"exit_code,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
}

// ContainerUser is the user a container's process runs as.
type ContainerUser struct {
	UID    int64   `json:"uid"`
	GID    int64   `json:"gid"`
	Groups []int64 `json:"groups,omitempty"` // GID first, then the additional ones
}

// ContainerMetadata mirrors the CRI ContainerMetadata.
type ContainerMetadata struct {
	Name    string `json:"name"`
	Attempt uint32 `json:"attempt"`
}

// Key implements Record.
func (c Container) Key() string { return c.ID }

// UniqueName implements Record: names are unique within a pod, per attempt.
func (c Container) UniqueName() string {
	return fmt.Sprintf("%s_%s_%d", c.SandboxID, c.Metadata.Name, c.Metadata.Attempt)
}

// ContainerState is the container's place in its lifecycle.
type ContainerState int

// The container states, as CRI names them.
const (
	ContainerCreated ContainerState = iota
	ContainerRunning
	ContainerExited
)

// State derives the container's state from its timestamps.
func (c Container) State() ContainerState {
	switch {
	case !c.FinishedAt.IsZero():
		return ContainerExited
	case !c.StartedAt.IsZero():
		return ContainerRunning
	default:
		return ContainerCreated
	}
}
