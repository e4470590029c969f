package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	remotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/berth-cri/berth/internal/monitor/api"
)

// Stdio is the client side of an exec's or attach's streams. Nil streams
// are not sent (Stdin) or discarded (Stdout, Stderr).
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Resize         <-chan remotecommand.TerminalSize // a terminal's sizes, in cells
}

// Exec runs process (an OCI process spec; its Terminal field asks for a
// pty) in the running container id and returns its exit code. When ctx
// ends first, the monitor kills the process and ctx's error is returned.
func (c Client) Exec(ctx context.Context, id string, process any, stdio Stdio) (int32, error) {
	raw, err := json.Marshal(process)
	if err != nil {
		return 0, fmt.Errorf("encode exec process: %w", err)
	}
	return c.stream(ctx, api.Request{Op: api.OpExec, ID: id, Process: raw, Stdin: stdio.Stdin != nil}, stdio)
}

// Attach joins the running container id's stdio until it exits (its exit
// code is returned) or ctx ends.
func (c Client) Attach(ctx context.Context, id string, stdio Stdio) (int32, error) {
	return c.stream(ctx, api.Request{Op: api.OpAttach, ID: id, Stdin: stdio.Stdin != nil}, stdio)
}

func (c Client) stream(ctx context.Context, req api.Request, stdio Stdio) (int32, error) {
	// Hanging up is how the client stops: for an exec it kills the process.
	conn, hangUp, err := c.open(ctx, req)
	if err != nil {
		return 0, err
	}
	defer hangUp()
	fw := api.NewFrameWriter(conn)
	done := make(chan struct{})
	defer close(done)
	if stdio.Stdin != nil {
		go sendStdin(fw, stdio.Stdin)
	}
	if stdio.Resize != nil {
		go func() {
			for {
				select {
				case size, ok := <-stdio.Resize:
					if !ok {
						return
					}
					if fw.WriteResize(size.Width, size.Height) != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	buf := make([]byte, api.MaxFramePayload)
	for {
		kind, p, err := api.ReadFrame(conn, buf)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("%w: %s stream ended early: %v", ErrUnreachable, req.Op, err)
		}
		switch kind {
		case api.FrameStdout:
			if stdio.Stdout != nil {
				stdio.Stdout.Write(p)
			}
		case api.FrameStderr:
			if stdio.Stderr != nil {
				stdio.Stderr.Write(p)
			}
		case api.FrameExit:
			return api.ParseExit(p)
		case api.FrameError:
			return 0, errors.New(string(p))
		case api.FrameNotRunning:
			return 0, fmt.Errorf("%s: %w", p, ErrNotRunning)
		}
	}
}

// ErrNotRunning means the container is not (or no longer) running.
var ErrNotRunning = errors.New("container not running")

// sendStdin forwards r as stdin frames, then says it ended.
func sendStdin(fw *api.FrameWriter, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if fw.Write(api.FrameStdin, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			_ = fw.Write(api.FrameStdinClose, nil)
			return
		}
	}
}
