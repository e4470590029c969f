// Package pause is the body of a PID namespace's init: it reaps the orphans
// the namespace hands it and returns on SIGTERM or SIGINT. berth-monitor
// runs it for pods that share a PID namespace; the test images' pause
// program runs it too.
package pause

import (
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Run blocks until SIGTERM or SIGINT — or, when lifeline is not nil, until
// lifeline reaches EOF, which happens when the process holding its write end
// dies however it dies — reaping exited children meanwhile. Go's runtime
// does not reap for an init, so SIGCHLD is handled here.
func Run(lifeline *os.File) {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	orphaned := make(chan struct{})
	if lifeline != nil {
		go func() {
			io.Copy(io.Discard, lifeline)
			close(orphaned)
		}()
	}
	for {
		select {
		case <-orphaned:
			return
		case s := <-sigs:
			if s != syscall.SIGCHLD {
				return
			}
			for {
				var ws syscall.WaitStatus
				if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
