package sysinfo

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestProcesses(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"BERTH_TEST_MARK=" + t.Name()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if pids := Processes("environ", "BERTH_TEST_MARK="+t.Name()); !slices.Equal(pids, []int{cmd.Process.Pid}) {
		t.Errorf("by environ: %v, want [%d]", pids, cmd.Process.Pid)
	}
	if pids := Processes("environ", "BERTH_TEST_MARK="); len(pids) != 0 {
		t.Errorf("a prefix of a field matched: %v", pids)
	}
	if pids := Processes("cmdline", "30"); !slices.Contains(pids, cmd.Process.Pid) || slices.Contains(pids, os.Getpid()) {
		t.Errorf("by cmdline's last field: %v, want %d among them", pids, cmd.Process.Pid)
	}
}
