// Package api is the protocol between the berth daemon and a pod's monitor
// (cmd/berth-monitor): one JSON request per connection, answered by one JSON
// response, except Events, whose connection then carries one Event per line
// until either side closes it. It is deliberately tiny: the monitor imports
// it, and every import costs each pod memory.
package api

import "time"

// Operations.
const (
	OpStart    = "start"    // runc create + start a container; Response.Pid
	OpKill     = "kill"     // signal a container's init (or all its processes)
	OpDelete   = "delete"   // forget an exited container; runc delete --force
	OpReopen   = "reopen"   // reopen a container's log file
	OpState    = "state"    // every container the monitor knows; Response.Containers
	OpEvents   = "events"   // stream exit events
	OpShutdown = "shutdown" // exit once no container runs (ending the pause process)
	OpPause    = "pause"    // start (once) the init of a shared pod PID namespace; Response.Pid
)

// Request is one call.
type Request struct {
	Op string `json:"op"`
	ID string `json:"id,omitempty"`
	// Bundle is the OCI bundle directory (config.json, rootfs) for Start.
	Bundle string `json:"bundle,omitempty"`
	// LogPath is where Start writes the container's CRI log ("" for none).
	LogPath string `json:"log_path,omitempty"`
	// Signal for Kill; All signals every process of the container.
	Signal int  `json:"signal,omitempty"`
	All    bool `json:"all,omitempty"`
}

// Response answers a Request. Error is set when the call failed.
type Response struct {
	Error      string      `json:"error,omitempty"`
	Pid        int         `json:"pid,omitempty"`
	Containers []Container `json:"containers,omitempty"`
}

// Container is what the monitor knows about one container.
type Container struct {
	ID      string `json:"id"`
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	Exit    *Exit  `json:"exit,omitempty"`
}

// Exit records how a container's init process ended. The monitor writes it
// to ExitFile in the bundle (atomically) before reporting it anywhere.
type Exit struct {
	Code       int32     `json:"code"`
	Signal     int       `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
}

// ExitFile is the name of the exit record in a container's bundle.
const ExitFile = "exit.json"

// Event is sent on an Events connection when a container exits. The first
// event on a connection is empty (no ID): it acknowledges the subscription.
type Event struct {
	ID   string `json:"id"`
	Exit Exit   `json:"exit"`
}
