package daemon

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/config"
)

func TestConfigDiffNamesKeysAndRestartOnes(t *testing.T) {
	a := config.Default()
	b := config.Default()
	b.Log.Level = "debug"
	b.Root = "/elsewhere"
	b.Runtime.Handlers = map[string]config.Handler{"runc": {Path: "runc"}, "kata": {Path: "/usr/bin/kata"}}
	b.Stream.Address = "127.0.0.1:1234"
	changes, err := configDiff(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range changes {
		keys = append(keys, c.key)
	}
	got := strings.Join(keys, " ")
	for _, want := range []string{"log.level", "root", "runtime.handlers.kata.path", "runtime.handlers.crun.path", "streaming.address"} {
		if !strings.Contains(got, want) {
			t.Errorf("diff %q lacks %s", got, want)
		}
	}
	for key, want := range map[string]bool{
		"root": true, "streaming.address": true, "shutdown_timeout": true, "image.snapshotter": true, "tracing.endpoint": false,
		"log.level": false, "runtime.handlers.kata.path": false, "registry.config_path": false, "metrics.address": false,
	} {
		if needsRestart(key) != want {
			t.Errorf("needsRestart(%s) = %v", key, !want)
		}
	}
}

// TestReloadRefusesAStalePidFile: a pid file naming a process that is not
// berth (the daemon was killed, its PID reused) gets no signal.
func TestReloadRefusesAStalePidFile(t *testing.T) {
	state := t.TempDir()
	// This test binary is not berth.
	if err := os.WriteFile(PidFile(state), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := RequestReload(state, time.Second); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("RequestReload with a stale pid file: %v", err)
	}
	if _, err := RequestReload(t.TempDir(), time.Second); err == nil || !strings.Contains(err.Error(), "no berth daemon") {
		t.Errorf("RequestReload without a pid file: %v", err)
	}
}
