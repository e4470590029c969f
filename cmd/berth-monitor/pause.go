package main

import (
	"os"
	"os/exec"
	"syscall"
)

// startPause starts, once, the init process of the pod's shared PID
// namespace: this binary again, with --pause, in a new PID namespace.
// Containers join it through /proc/PID/ns/pid. It is the monitor's child,
// so it outlives the daemon as the containers do.
func (m *monitor) startPause() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pausePid != 0 {
		return m.pausePid, nil
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(self, "--pause")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if _, err := m.reaper.Start(cmd); err != nil {
		return 0, err
	}
	m.pausePid = cmd.Process.Pid
	return m.pausePid, nil
}

// stopPause ends the pause process, if one runs.
func (m *monitor) stopPause() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pausePid != 0 {
		_ = syscall.Kill(m.pausePid, syscall.SIGKILL)
		m.pausePid = 0
	}
}
