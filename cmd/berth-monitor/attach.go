package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"

	"github.com/berth-cri/berth/internal/monitor/api"
)

// attachWriteTimeout bounds how long one attached client may hold up the
// container's output (and its log) by not reading.
const attachWriteTimeout = 5 * time.Second

// containerStdin is the container's stdin as the monitor keeps it for
// attached clients: a pipe, or the pty master of a terminal container.
type containerStdin struct {
	mu       sync.Mutex
	w        io.WriteCloser // nil once closed; guarded by mu
	once     bool           // stdin_once: close when the first client's stdin ends
	terminal bool           // w is the pty master, which the output also needs
}

func (s *containerStdin) write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return errors.New("the container's stdin is closed")
	}
	_, err := s.w.Write(p)
	return err
}

// clientDone is called when an attached client's stdin ends.
func (s *containerStdin) clientDone() {
	if s.once && !s.terminal {
		s.close()
	}
}

func (s *containerStdin) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil && !s.terminal {
		s.w.Close()
	}
	s.w = nil
}

// closeStdio releases the stdio the monitor kept once the container is
// gone.
func (c *container) closeStdio() {
	if c.stdin != nil {
		c.stdin.close()
	}
	if c.console != nil {
		c.console.Close()
	}
}

// attachHub is the set of clients attached to a container's output.
type attachHub struct {
	mu      sync.Mutex
	clients map[*api.FrameWriter]net.Conn // guarded by mu
}

func (h *attachHub) add(fw *api.FrameWriter, conn net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients == nil {
		h.clients = map[*api.FrameWriter]net.Conn{}
	}
	h.clients[fw] = conn
}

func (h *attachHub) remove(fw *api.FrameWriter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, fw)
}

// broadcast sends p to every attached client; one that cannot take it in
// time is dropped (its connection closed), so it cannot stall the log.
func (h *attachHub) broadcast(frame byte, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for fw, conn := range h.clients {
		_ = conn.SetWriteDeadline(time.Now().Add(attachWriteTimeout))
		if err := fw.Write(frame, p); err != nil {
			conn.Close()
			delete(h.clients, fw)
		}
	}
}

// teeReader hands what it reads to the attached clients as well.
type teeReader struct {
	r     io.Reader
	frame byte
	hub   *attachHub
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.hub.broadcast(t.frame, p[:n])
	}
	// A pty master reads EIO once the last slave is closed: that is its
	// end of stream.
	if errors.Is(err, syscall.EIO) {
		err = io.EOF
	}
	return n, err
}

// attach joins a client to a running container's stdio until the
// container exits (the client then gets its exit code) or the client goes.
func (m *monitor) attach(conn net.Conn, in io.Reader, req api.Request) {
	fw := api.NewFrameWriter(conn)
	c, err := m.get(req.ID)
	if err != nil {
		fw.Write(api.FrameNotRunning, []byte(notRunningError{req.ID}.Error()))
		return
	}
	c.attached.add(fw, conn)
	defer c.attached.remove(fw)
	select {
	case <-c.exited:
		fw.Write(api.FrameNotRunning, []byte(notRunningError{c.id}.Error()))
		return
	default:
	}
	stdin := c.stdin
	if !req.Stdin {
		stdin = nil
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		readClient(in, stdin, c.console)
	}()
	select {
	case <-c.exited:
		c.mu.Lock()
		code := c.exit.Code
		c.mu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(attachWriteTimeout))
		fw.WriteExit(code)
	case <-gone:
	}
}

// readClient applies an attached client's frames until it hangs up: stdin
// to the container's stdin (when it has one and the client sends it),
// sizes to its terminal.
func readClient(in io.Reader, stdin *containerStdin, tty console.Console) {
	buf := make([]byte, api.MaxFramePayload)
	defer func() {
		if stdin != nil {
			stdin.clientDone()
		}
	}()
	for {
		kind, p, err := api.ReadFrame(in, buf)
		if err != nil {
			return
		}
		switch kind {
		case api.FrameStdin:
			if stdin != nil {
				_ = stdin.write(p)
			}
		case api.FrameStdinClose:
			if stdin != nil {
				stdin.clientDone()
				stdin = nil
			}
		case api.FrameResize:
			if w, h, err := api.ParseResize(p); err == nil && tty != nil {
				_ = tty.Resize(console.WinSize{Width: w, Height: h})
			}
		}
	}
}
