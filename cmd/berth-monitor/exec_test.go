package main

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestStatExiting(t *testing.T) {
	for _, c := range []struct {
		stat string
		want bool
	}{
		{"42 (sh) S 1 42 42 0 -1 4194560 1 0", false},
		{"42 (sh) R 1 42 42 0 -1 4194564 1 0", true}, // PF_EXITING
		{"42 (a) b) Z 1 42 42 0 -1 4194560 1 0", true},
		{"42 (sh) X 1 42 42 0 -1 0 1 0", true},
		{"42 (sh) S 1", false},
		{"garbage", false},
	} {
		if got := statExiting(c.stat); got != c.want {
			t.Errorf("statExiting(%q) = %v, want %v", c.stat, got, c.want)
		}
	}
}

func TestProcessExitingOnRealProcesses(t *testing.T) {
	if processExiting(os.Getpid()) {
		t.Fatal("this test's own process reported exiting")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Wait for the exit without reaping: the child stays a zombie.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if !processExiting(pid) {
		t.Error("a zombie was not reported exiting")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !processExiting(pid) {
		t.Error("a reaped process was not reported gone")
	}
}
