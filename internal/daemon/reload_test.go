package daemon

import (
	"strings"
	"testing"

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
