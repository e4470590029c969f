package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/monitor/api"
)

// minimalSpec is a hand-written OCI spec: the monitor is tested on its own,
// without berth's spec builder.
func minimalSpec(args ...string) map[string]any {
	return map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"user": map[string]any{"uid": 0, "gid": 0},
			"args": args,
			"env":  []string{"PATH=/bin:/usr/bin"},
			"cwd":  "/",
		},
		"root": map[string]any{"path": "rootfs"},
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
		},
		"linux": map[string]any{
			"namespaces": []map[string]any{{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}},
		},
	}
}

func bundle(t *testing.T, root string, args ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp(root, "bundle-")
	if err != nil {
		t.Fatal(err)
	}
	busyboxRootfs(t, filepath.Join(dir, "rootfs"))
	b, _ := json.Marshal(minimalSpec(args...))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func launchMonitor(t *testing.T, dir string) monitor.Client {
	t.Helper()
	sock := filepath.Join(dir, "m.sock")
	_, err := monitor.Launch(t.Context(), monitor.LaunchOptions{
		Binary: monitorBinary, Socket: sock, RuncPath: "runc",
		RuncRoot: filepath.Join(dir, "runc"), LogPath: filepath.Join(dir, "monitor.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := monitor.Client{Socket: sock}
	t.Cleanup(func() {
		for _, st := range mustState(t, c) {
			if st.Running {
				c.Kill(context.Background(), st.ID, syscall.SIGKILL, true)
			}
		}
		// Shutdown succeeds once no container runs; wait for exits first.
		deadline := time.Now().Add(10 * time.Second)
		for c.Shutdown(context.Background()) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return c
}

func mustState(t *testing.T, c monitor.Client) []api.Container {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMonitorRunsContainerAndRecordsExit(t *testing.T) {
	dir := t.TempDir()
	c := launchMonitor(t, dir)
	events := make(chan api.Event, 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subscribed := make(chan struct{})
	go c.Events(ctx, func() { close(subscribed) }, func(ev api.Event) { events <- ev })
	<-subscribed

	b := bundle(t, dir, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	logPath := filepath.Join(dir, "ctr.log")
	pid, err := c.Start(t.Context(), "c1", b, monitor.StartOptions{LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	if pid <= 0 {
		t.Fatalf("pid = %d", pid)
	}
	ev := <-events
	if ev.ID != "c1" || ev.Exit.Code != 3 {
		t.Errorf("event = %+v", ev)
	}
	exit, ok, err := monitor.ReadExit(b)
	if err != nil || !ok {
		t.Fatalf("exit record: %v, %v", ok, err)
	}
	if exit.Code != 3 || exit.FinishedAt.IsZero() {
		t.Fatalf("exit = %+v, want code 3 with a finish time", exit)
	}
	log, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != 2 {
		t.Fatalf("log:\n%s", log)
	}
	for _, want := range []string{" stdout F to-stdout", " stderr F to-stderr"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	st := mustState(t, c)
	if len(st) != 1 || st[0].Running || st[0].Exit == nil || st[0].Exit.Code != 3 {
		t.Fatalf("state = %+v", st)
	}
	if err := c.Delete(t.Context(), "c1"); err != nil {
		t.Fatal(err)
	}
}

func TestMonitorKillAndBadStart(t *testing.T) {
	dir := t.TempDir()
	c := launchMonitor(t, dir)
	b := bundle(t, dir, "sleep", "1000")
	if _, err := c.Start(t.Context(), "sleeper", b, monitor.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(t.Context(), "sleeper"); err == nil {
		t.Fatal("delete of a running container succeeded")
	}
	if err := c.Kill(t.Context(), "sleeper", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if exit, ok, _ := monitor.ReadExit(b); ok {
			if exit.Code != 137 || exit.Signal != 9 {
				t.Fatalf("exit = %+v, want 137 / SIGKILL", exit)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no exit record 10s after SIGKILL")
		}
		time.Sleep(10 * time.Millisecond)
	}

	bad := bundle(t, dir, "/no/such/binary")
	_, err := c.Start(t.Context(), "bad", bad, monitor.StartOptions{})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("start of a missing binary: err = %v, want runc's reason", err)
	}
	for _, st := range mustState(t, c) {
		if st.ID == "bad" {
			t.Fatalf("failed start left a container behind: %+v", st)
		}
	}
}
