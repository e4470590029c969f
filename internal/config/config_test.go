package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValidAndComplete(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if c.Address != "/run/berth/berth.sock" || c.Root != "/var/lib/berth" || c.State != "/run/berth" {
		t.Errorf("paths = %q %q %q", c.Address, c.Root, c.State)
	}
	if c.ShutdownTimeout.Duration != 10*time.Second {
		t.Errorf("shutdown_timeout = %v", c.ShutdownTimeout)
	}
	if len(c.CNI.BinDirs) == 0 || c.CNI.ConfDir == "" || c.Registry.ConfigPath == "" {
		t.Errorf("cni/registry defaults missing: %+v %+v", c.CNI, c.Registry)
	}
}

func TestLoadMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	c, err := Load(missing, true)
	if err != nil {
		t.Fatalf("Load(missing, allowMissing): %v", err)
	}
	if c.Root != Default().Root {
		t.Errorf("root = %q", c.Root)
	}
	if _, err := Load(missing, false); err == nil {
		t.Fatal("Load(missing, explicit) succeeded, want error")
	}
}

func TestLoadOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	body := `
root = "/tmp/r"
[registry]
config_path = "/tmp/hosts"
[cni]
conf_dir = "/tmp/net.d"
bin_dirs = ["/a", "/b"]
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != "/tmp/r" || c.Registry.ConfigPath != "/tmp/hosts" || c.CNI.ConfDir != "/tmp/net.d" {
		t.Errorf("overrides not applied: %+v", c)
	}
	if strings.Join(c.CNI.BinDirs, ",") != "/a,/b" {
		t.Errorf("bin_dirs = %v", c.CNI.BinDirs)
	}
	if c.State != Default().State {
		t.Errorf("unset key lost its default: state = %q", c.State)
	}
}

func TestLoadRejectsUnknownKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte("[cni]\nconfdir = \"/x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, false)
	if err == nil || !strings.Contains(err.Error(), "cni.confdir") {
		t.Fatalf("err = %v, want unknown key cni.confdir", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"relative root", func(c *Config) { c.Root = "var/lib" }, "root must be an absolute path"},
		{"empty address", func(c *Config) { c.Address = "" }, "address must not be empty"},
		{"bad level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"bad format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"bad driver", func(c *Config) { c.Runtime.CgroupDriver = "both" }, "cgroup_driver"},
		{"metrics address without port", func(c *Config) { c.Metrics.Address = "127.0.0.1" }, "metrics.address"},
		{"profiles beyond loopback", func(c *Config) { c.Debug.Address = "0.0.0.0:6060" }, "loopback only"},
		{"profiles on no host", func(c *Config) { c.Debug.Address = ":6060" }, "loopback only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.want)
			}
		})
	}
}
