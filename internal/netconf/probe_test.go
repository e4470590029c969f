package netconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const bridgeList = `{"cniVersion":"1.0.0","name":"berth-test","plugins":[
 {"type":"bridge","bridge":"berth0","ipam":{"type":"host-local","subnet":"10.88.0.0/16"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}`

func write(t *testing.T, dir, name, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func TestProbe(t *testing.T) {
	confDir, binDir := t.TempDir(), t.TempDir()

	r := Probe(filepath.Join(confDir, "missing"), []string{binDir})
	if r.Ready || r.Reason != ReasonNoConfig {
		t.Fatalf("missing dir: %+v", r)
	}
	r = Probe(confDir, []string{binDir})
	if r.Ready || !strings.Contains(r.Message, "no network config") {
		t.Fatalf("empty dir: %+v", r)
	}

	write(t, confDir, "05-broken.conflist", "{not json", 0o644)
	write(t, confDir, "10-bridge.conflist", bridgeList, 0o644)
	r = Probe(confDir, []string{binDir})
	if r.Ready || r.Reason != ReasonMissingPlugin || r.Network != "berth-test" {
		t.Fatalf("plugins absent: %+v", r)
	}
	if !strings.Contains(r.Message, "bridge, portmap") {
		t.Errorf("message does not name the missing plugins: %q", r.Message)
	}

	write(t, binDir, "bridge", "#!/bin/sh\n", 0o755)
	write(t, binDir, "portmap", "#!/bin/sh\n", 0o755)
	r = Probe(confDir, []string{t.TempDir(), binDir})
	if !r.Ready || r.File != filepath.Join(confDir, "10-bridge.conflist") {
		t.Fatalf("complete config not ready: %+v", r)
	}
}

func TestProbeSinglePluginConf(t *testing.T) {
	confDir, binDir := t.TempDir(), t.TempDir()
	write(t, confDir, "99-loopback.conf", `{"cniVersion":"1.0.0","name":"lo","type":"loopback"}`, 0o644)
	write(t, binDir, "loopback", "#!/bin/sh\n", 0o755)
	if r := Probe(confDir, []string{binDir}); !r.Ready || r.Network != "lo" {
		t.Fatalf("single .conf: %+v", r)
	}
}
