package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// pauseBinary is the PID namespace init shipped beside the monitor
// (cmd/berth-pause, a few kB of C).
const pauseBinary = "berth-pause"

// startPause starts, once, the init process of the pod's shared PID
// namespace, in a new PID namespace: berth-pause from beside this binary,
// or this binary again with --pause (a Go runtime, a few MB more per pod)
// when it is missing. Containers join it through /proc/PID/ns/pid. It is
// the monitor's child, so it outlives the daemon as the containers do.
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
	cmd := exec.Command(filepath.Join(filepath.Dir(self), pauseBinary))
	if _, err := os.Stat(cmd.Path); err != nil {
		m.logger.Warn("no "+pauseBinary+" beside the monitor; the monitor itself is the pod's PID namespace init", "error", err)
		cmd = exec.Command(self, "--pause")
	}
	// The pause process reads the lifeline until EOF: the write end stays
	// here, so it closes when the monitor dies, even by SIGKILL.
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer lifeR.Close()
	cmd.ExtraFiles = []*os.File{lifeR} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if _, err := m.reaper.Start(cmd); err != nil {
		lifeW.Close()
		return 0, err
	}
	m.pausePid, m.pauseLifeline = cmd.Process.Pid, lifeW
	return m.pausePid, nil
}

// stopPause ends the pause process, if one runs.
func (m *monitor) stopPause() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pausePid != 0 {
		_ = syscall.Kill(m.pausePid, syscall.SIGKILL)
		m.pauseLifeline.Close()
		m.pausePid, m.pauseLifeline = 0, nil
	}
}
