package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/berth-cri/berth/internal/config"
)

func TestConfigDefaultPrintsTheDefaults(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"config", "default"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var c config.Config
	if _, err := toml.Decode(out.String(), &c); err != nil {
		t.Fatalf("printed config does not parse: %v", err)
	}
	if c.Root != config.Default().Root || !strings.Contains(out.String(), "# ") {
		t.Errorf("printed config is not the commented defaults:\n%s", out.String())
	}
	for _, key := range []string{"config_path", "conf_dir", "bin_dirs"} {
		if !strings.Contains(out.String(), key) {
			t.Errorf("default config lacks %s", key)
		}
	}
}

func TestVersionFlagAndCommand(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}, {"daemon", "--version"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "berth ") {
			t.Errorf("%v: exit %d, out %q, err %q", args, code, out.String(), errOut.String())
		}
	}
}

func TestUnknownCommandAndFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "unknown command") {
		t.Errorf("unknown command: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"--no-such-flag"}, &out, &errOut); code != 2 {
		t.Errorf("unknown flag: exit %d, %q", code, errOut.String())
	}
}

func TestFlagsOverrideConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte("root = \"/from/file\"\nstate = \"/from/file/state\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newDaemonFlags(&bytes.Buffer{})
	cfg, err := f.load([]string{"--config", path, "--root", "/from/flag", "--log-format", "json"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/from/flag" || cfg.State != "/from/file/state" || cfg.Log.Format != "json" {
		t.Errorf("cfg = root %q state %q format %q", cfg.Root, cfg.State, cfg.Log.Format)
	}
	f = newDaemonFlags(&bytes.Buffer{})
	if _, err := f.load([]string{"--config", filepath.Join(t.TempDir(), "missing.toml")}); err == nil {
		t.Error("an explicitly named missing config file was accepted")
	}
	f = newDaemonFlags(&bytes.Buffer{})
	if _, err := f.load([]string{"--config", path, "--log-level", "chatty"}); err == nil {
		t.Error("invalid --log-level accepted")
	}
}
