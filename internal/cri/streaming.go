package cri

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/store"
)

// Exec returns the URL on the streaming server where the client runs the
// command interactively.
func (s *Service) Exec(ctx context.Context, r *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if len(r.GetCmd()) == 0 {
		return nil, fmt.Errorf("cmd must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if r.GetTty() && r.GetStderr() {
		return nil, fmt.Errorf("tty and stderr cannot both be set: a terminal has one output stream: %w", errdefs.ErrInvalidArgument)
	}
	id, err := s.streamTarget(r.GetContainerId(), r.GetStdin() || r.GetStdout() || r.GetStderr())
	if err != nil {
		return nil, err
	}
	r.ContainerId = id
	return s.streams.GetExec(r)
}

// Attach returns the URL on the streaming server where the client joins a
// running container's stdio.
func (s *Service) Attach(ctx context.Context, r *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	id, err := s.streamTarget(r.GetContainerId(), r.GetStdin() || r.GetStdout() || r.GetStderr())
	if err != nil {
		return nil, err
	}
	r.ContainerId = id
	return s.streams.GetAttach(r)
}

// streamTarget checks an Exec or Attach request: the streaming server runs,
// some stream is asked for, and the container (ID or unique prefix) runs.
// It returns the container's full ID.
func (s *Service) streamTarget(containerID string, anyStream bool) (string, error) {
	if s.streams == nil {
		return "", fmt.Errorf("streaming server not running: %w", errdefs.ErrUnavailable)
	}
	if !anyStream {
		return "", fmt.Errorf("one of stdin, stdout and stderr must be set: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.store.Containers.Get(containerID)
	if err != nil {
		return "", err
	}
	if c.State() != store.ContainerRunning {
		return "", fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	return c.ID, nil
}

// PortForward returns the URL on the streaming server that forwards to
// ports inside the pod's network namespace.
func (s *Service) PortForward(ctx context.Context, r *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	if s.streams == nil {
		return nil, fmt.Errorf("streaming server not running: %w", errdefs.ErrUnavailable)
	}
	sb, err := s.store.Sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if !sb.Ready {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	r.PodSandboxId = sb.ID
	return s.streams.GetPortForward(r)
}

// SetStreams attaches the streaming server whose URLs Exec and PortForward
// hand out. Called once at start-up, before serving.
func (s *Service) SetStreams(srv streaming.Server) { s.streams = srv }

// StreamRuntime is what the streaming server runs requests against.
func (s *Service) StreamRuntime() streaming.Runtime { return streamRuntime{s} }

type streamRuntime struct{ s *Service }

// Exec runs cmd in the container through the pod's monitor, wired to the
// client's streams. A non-zero exit is returned as a CodeExitError, which
// the server reports to the client as the command's exit code.
func (rt streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	c, err := rt.s.store.Containers.Get(id)
	if err != nil {
		return err
	}
	code, err := rt.s.execInContainer(ctx, c, cmd, tty, streamStdio(in, out, errw, resize))
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command exited with %d", code), Code: int(code)}
	}
	return nil
}

// Attach joins the container's stdio, kept by the pod's monitor, until the
// container exits or the client goes. Stdin reaches the container only if
// it was created with stdin.
func (rt streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	c, err := rt.s.store.Containers.Get(id)
	if err != nil {
		return err
	}
	sb, err := rt.s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return fmt.Errorf("pod of container %s: %w", c.ID, err)
	}
	_, err = rt.s.monitors.Client(sb.MonitorSocket).Attach(ctx, c.ID, streamStdio(in, out, errw, resize))
	if ctx.Err() != nil {
		return nil // the client detached
	}
	return err
}

// streamStdio adapts the streaming server's streams to the monitor
// client's: the server's nil streams come as nil interfaces of its types.
func streamStdio(in io.Reader, out, errw io.WriteCloser, resize <-chan remotecommandserver.TerminalSize) monitor.Stdio {
	stdio := monitor.Stdio{Resize: resize}
	if in != nil {
		stdio.Stdin = in
	}
	if out != nil {
		stdio.Stdout = out
	}
	if errw != nil {
		stdio.Stderr = errw
	}
	return stdio
}

// PortForward connects stream to port on the pod's loopback, dialled from
// inside the pod's network namespace (or the host's, for host-network pods).
func (rt streamRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	sb, err := rt.s.store.Sandboxes.Get(podID)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	conn, err := dialInNetNS(ctx, sb.Paths.NetNS, addr)
	if err != nil {
		return fmt.Errorf("port-forward to %s in pod %s: %w", addr, podID, err)
	}
	defer conn.Close()
	errs := make(chan error, 2)
	go func() { _, err := io.Copy(conn, stream); errs <- err }()
	go func() { _, err := io.Copy(stream, conn); errs <- err }()
	select {
	case err = <-errs:
	case <-ctx.Done():
		err = ctx.Err()
	}
	return err
}

// dialInNetNS dials addr over TCP from the network namespace at nsPath
// ("" for the daemon's own). The socket is made on a thread that has
// joined the namespace (netns.Do); once made, it stays in it.
func dialInNetNS(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	var d net.Dialer
	if nsPath == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	var conn net.Conn
	err := netns.Do(nsPath, func() error {
		var err error
		conn, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return conn, err
}
