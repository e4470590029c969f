// Package api is the protocol between the berth daemon and a pod's monitor
// (cmd/berth-monitor): one JSON request per connection, answered by one JSON
// response, except Events, whose connection then carries one Event per line
// until either side closes it. It is deliberately tiny: the monitor imports
// it, and every import costs each pod memory.
package api

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Protocol is the version of this protocol the monitor speaks. Changes
// are additive (new fields and operations; old fields keep their meaning),
// so a daemon drives monitors an older berth started — they keep running
// across an upgrade — and knows from the version which additions they
// lack. 1: monitors before versioning (they report none); 2: adds
// Response.Protocol, FrameNotRunning, Request.LogRoot, Response.Kind.
const Protocol = 2

// Operations.
const (
	OpStart    = "start"    // run a container (runc run --detach); Response.Pid
	OpKill     = "kill"     // signal a container's init (or all its processes)
	OpDelete   = "delete"   // forget an exited container; runc delete --force
	OpReopen   = "reopen"   // reopen a container's log file
	OpState    = "state"    // every container the monitor knows; Response.Containers
	OpEvents   = "events"   // stream exit events
	OpShutdown = "shutdown" // exit once no container runs (ending the pause process)
	OpPause    = "pause"    // start (once) the init of a shared pod PID namespace; Response.Pid
	OpExec     = "exec"     // run Process in a running container; then frames (see FrameStdin)
	OpAttach   = "attach"   // join a running container's stdio; then frames
)

// Request is one call.
type Request struct {
	Op string `json:"op"`
	ID string `json:"id,omitempty"`
	// Bundle is the OCI bundle directory (config.json, rootfs) for Start.
	Bundle string `json:"bundle,omitempty"`
	// LogPath is where Start writes the container's CRI log ("" for none).
	// With LogRoot set (the pod's log directory), LogPath is opened beneath
	// it, its missing directories created: it can never reach outside.
	LogPath string `json:"log_path,omitempty"`
	LogRoot string `json:"log_root,omitempty"`
	// Signal for Kill; All signals every process of the container.
	Signal int  `json:"signal,omitempty"`
	All    bool `json:"all,omitempty"`
	// Stdin: for Start, keep the container's stdin open for Attach; for
	// Exec and Attach, the client sends stdin. StdinOnce (Start): close the
	// container's stdin when the first attached client's stdin ends.
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdin_once,omitempty"`
	// Process is the OCI process spec (JSON) for Exec; its terminal field
	// asks for a pty.
	Process json.RawMessage `json:"process,omitempty"`
	// Settle (State): answer once the starts in progress have finished
	// (bounded), so that every started container has its PID.
	Settle bool `json:"settle,omitempty"`
}

// Response answers a Request. Error is set when the call failed.
type Response struct {
	Error      string      `json:"error,omitempty"`
	Pid        int         `json:"pid,omitempty"`
	Containers []Container `json:"containers,omitempty"`
	// AlreadyStarted (Start): the monitor had started the container before.
	AlreadyStarted bool `json:"already_started,omitempty"`
	// Kind classifies Error for the daemon: one of the Kind* values, or "".
	Kind string `json:"kind,omitempty"`
	// Protocol is the monitor's protocol version (0 from a monitor of
	// version 1, which predates it).
	Protocol int `json:"protocol,omitempty"`
}

// Kinds of failure the daemon tells apart.
const (
	KindLogPath = "log_path" // the log file could not be opened (Start, Reopen)
	KindRunning = "running"  // the container still runs (Delete)
)

// Container is what the monitor knows about one container.
type Container struct {
	ID      string `json:"id"`
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	Exit    *Exit  `json:"exit,omitempty"`
}

// Exit records how a container's init process ended. The monitor writes it
// to the bundle's exit record (layout.Bundle.Exit, atomically) before
// reporting it anywhere.
type Exit struct {
	Code       int32     `json:"code"`
	Signal     int       `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
}

// Event is sent on an Events connection when a container exits. The first
// event on a connection is empty (no ID): it acknowledges the subscription.
type Event struct {
	ID   string `json:"id"`
	Exit Exit   `json:"exit"`
}

// Streams: an Exec or Attach connection, after its Request, carries frames
// both ways: a kind byte, a big-endian uint32 length, then the payload.
const (
	// Client to monitor.
	FrameStdin      byte = 'i' // bytes for the process's stdin
	FrameStdinClose byte = 'c' // no more stdin: close it
	FrameResize     byte = 'r' // terminal size: uint16 width, uint16 height

	// Monitor to client.
	FrameStdout byte = 'o'
	FrameStderr byte = 'e'
	FrameExit   byte = 'x' // int32 exit code; the last frame of an exec or attach
	FrameError  byte = '!' // an error message; the last frame
	// FrameNotRunning: the container is not (or no longer) running; a
	// message, the last frame.
	FrameNotRunning byte = 'n'
)

// MaxFramePayload bounds one frame, so a peer cannot make the other
// allocate without limit.
const MaxFramePayload = 64 << 10

// FrameWriter writes frames; it is safe for concurrent use.
type FrameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	hdr [5]byte
}

// NewFrameWriter writes frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Write sends p as frames of kind, split at MaxFramePayload.
func (fw *FrameWriter) Write(kind byte, p []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for {
		n := min(len(p), MaxFramePayload)
		fw.hdr[0] = kind
		binary.BigEndian.PutUint32(fw.hdr[1:], uint32(n))
		if _, err := fw.w.Write(fw.hdr[:]); err != nil {
			return err
		}
		if _, err := fw.w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// WriteExit sends the exit frame.
func (fw *FrameWriter) WriteExit(code int32) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	return fw.Write(FrameExit, b[:])
}

// WriteResize sends a terminal size.
func (fw *FrameWriter) WriteResize(width, height uint16) error {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], width)
	binary.BigEndian.PutUint16(b[2:], height)
	return fw.Write(FrameResize, b[:])
}

// ReadFrame reads one frame from r into buf (which must hold
// MaxFramePayload bytes) and returns its kind and payload. The error is
// io.EOF only when r ends between frames; a frame cut short is
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFramePayload {
		return 0, nil, fmt.Errorf("frame of %d bytes exceeds %d", n, MaxFramePayload)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the header was read
		}
		return 0, nil, err
	}
	return hdr[0], buf[:n], nil
}

// ParseExit decodes an exit frame's payload.
func ParseExit(p []byte) (int32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("exit frame of %d bytes", len(p))
	}
	return int32(binary.BigEndian.Uint32(p)), nil
}

// ParseResize decodes a resize frame's payload.
func ParseResize(p []byte) (width, height uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize frame of %d bytes", len(p))
	}
	return binary.BigEndian.Uint16(p[:2]), binary.BigEndian.Uint16(p[2:]), nil
}
