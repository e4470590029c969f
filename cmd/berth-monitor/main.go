// Command berth-monitor is the per-pod monitor: it starts the pod's
// containers with runc, holds their stdout and stderr, writes their CRI log
// files, and records how each one exits — durably, in the container's bundle
// — so that containers outlive the berth daemon. It is a child subreaper,
// so it reaps container processes itself.
//
// It is a separate binary, not a re-exec of berth, so that it links little
// and costs each pod little memory. The daemon starts it with:
//
//	berth-monitor --socket S --runc PATH --runc-root DIR
//
// and waits for "ready\n" on file descriptor 3.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/pause"
	"github.com/berth-cri/berth/internal/version"
)

// execCmd names exec.Cmd for pipeIO's method set (runc.IO).
type execCmd = exec.Cmd

func main() {
	socket := flag.String("socket", "", "unix socket to serve the daemon on")
	runcPath := flag.String("runc", "runc", "OCI runtime binary")
	runcRoot := flag.String("runc-root", "/run/runc", "runc --root")
	pauseMode := flag.Bool("pause", false, "be the init of a shared pod PID namespace (started by the monitor itself)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Printf("berth-monitor %s\n", version.String())
		return
	}
	if *pauseMode {
		// fd 3 is the monitor's lifeline: EOF means the monitor is gone, and
		// a pod's PID namespace must not outlive its monitor.
		pause.Run(os.NewFile(3, "lifeline"))
		return
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*socket, *runcPath, *runcRoot, logger); err != nil {
		logger.Error("monitor exiting", "error", err)
		os.Exit(1)
	}
}

func run(socket, runcPath, runcRoot string, logger *slog.Logger) error {
	if socket == "" {
		return errors.New("--socket is required")
	}
	// A monitor is mostly idle; return freed memory to the kernel eagerly.
	debug.SetGCPercent(20)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	// Terminal and job-control signals must not take the monitor (and with
	// it the containers' stdio) down; the daemon ends it with Shutdown.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE)

	r := newReaper()
	runc.Monitor = r
	go r.run()

	_ = os.Remove(socket)
	lis, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		return err
	}
	m := &monitor{
		runcPath:    runcPath,
		runcRoot:    runcRoot,
		reaper:      r,
		logger:      logger,
		containers:  map[string]*container{},
		subscribers: map[chan api.Event]bool{},
	}
	// Tell the daemon we are serving.
	if ready := os.NewFile(3, "ready"); ready != nil {
		ready.Write([]byte("ready\n"))
		ready.Close()
	}
	done := make(chan struct{})
	var once sync.Once
	for {
		conn, err := lis.Accept()
		if err != nil {
			select {
			case <-done:
				return nil
			default:
				return fmt.Errorf("accept: %w", err)
			}
		}
		go m.serve(conn, func() {
			once.Do(func() {
				close(done)
				lis.Close() // also removes the socket file
			})
		})
	}
}

// serve answers one request on conn.
func (m *monitor) serve(conn net.Conn, shutdown func()) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var req api.Request
	br := bufio.NewReader(conn)
	dec := json.NewDecoder(br)
	if err := dec.Decode(&req); err != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	switch req.Op {
	case api.OpEvents:
		m.streamEvents(conn)
		return
	case api.OpExec, api.OpAttach:
		// Frames follow the request (and the newline json.Encoder puts
		// after it); the decoder may have read some of them.
		in := bufio.NewReader(io.MultiReader(dec.Buffered(), br))
		if b, err := in.Peek(1); err == nil && b[0] == '\n' {
			in.Discard(1)
		}
		if req.Op == api.OpExec {
			m.exec(conn, in, req)
		} else {
			m.attach(conn, in, req)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var resp api.Response
	var err error
	switch req.Op {
	case api.OpStart:
		resp.Pid, err = m.start(ctx, req)
		resp.AlreadyStarted = errors.Is(err, errAlreadyStarted)
	case api.OpKill:
		err = m.kill(ctx, req)
	case api.OpDelete:
		err = m.delete(req)
	case api.OpReopen:
		err = m.reopen(req)
	case api.OpState:
		if req.Settle {
			settle, cancel := context.WithTimeout(ctx, settleTimeout)
			resp.Containers = m.settledStates(settle)
			cancel()
		} else {
			resp.Containers = m.states()
		}
	case api.OpPause:
		resp.Pid, err = m.startPause()
	case api.OpShutdown:
		if n := m.running(); n > 0 {
			err = fmt.Errorf("%d containers still running", n)
		} else if !waitTimeout(&m.releasing, time.Minute) {
			err = errors.New("runtime deletes of exited containers still running after a minute")
		} else {
			m.stopPause()
			defer shutdown()
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		resp.Error = err.Error()
		resp.Kind = errorKind(err)
	}
	resp.Protocol = api.Protocol
	_ = json.NewEncoder(conn).Encode(resp)
}

// errorKind classifies err for the daemon (api.Kind*).
func errorKind(err error) string {
	var lp logPathError
	var re runningError
	switch {
	case errors.As(err, &lp):
		return api.KindLogPath
	case errors.As(err, &re):
		return api.KindRunning
	}
	return ""
}

// waitTimeout waits for wg up to d and says whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// streamEvents sends exit events until the daemon hangs up.
func (m *monitor) streamEvents(conn net.Conn) {
	ch := make(chan api.Event, 64)
	m.mu.Lock()
	m.subscribers[ch] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.subscribers, ch)
		m.mu.Unlock()
	}()
	// The daemon never writes after subscribing: a read returning means it
	// has gone.
	gone := make(chan struct{})
	go func() {
		buf := make([]byte, 1)
		conn.Read(buf)
		close(gone)
	}()
	enc := json.NewEncoder(conn)
	// An empty event acknowledges the subscription: every exit after it
	// will be sent, so the daemon can now read State to catch up.
	if err := enc.Encode(api.Event{}); err != nil {
		return
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return // cut off by publish
			}
			if err := enc.Encode(ev); err != nil {
				return
			}
		case <-gone:
			return
		}
	}
}
