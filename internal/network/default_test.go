package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteDefault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d")
	wrote, err := WriteDefault(dir, "")
	if err != nil || !wrote {
		t.Fatalf("empty dir: wrote %v, %v", wrote, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, DefaultFile))
	for _, want := range []string{`"bridge": "berth0"`, `"subnet": "10.88.0.0/16"`, `"portmap"`, `"loopback"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("default network lacks %s:\n%s", want, b)
		}
	}
	if wrote, _ := WriteDefault(dir, ""); wrote {
		t.Error("rewrote an identical file")
	}
	wrote, err = WriteDefault(dir, "10.99.0.0/24,fd00:99::/64")
	if err != nil || !wrote {
		t.Fatalf("pod CIDR: wrote %v, %v", wrote, err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, DefaultFile))
	if !strings.Contains(string(b), "10.99.0.0/24") || !strings.Contains(string(b), "fd00:99::/64") || !strings.Contains(string(b), `"::/0"`) {
		t.Errorf("dual-stack default network:\n%s", b)
	}
	if _, err := WriteDefault(dir, "not-a-cidr"); err == nil {
		t.Error("a malformed pod CIDR was written")
	}

	own := t.TempDir()
	os.WriteFile(filepath.Join(own, "05-mine.conflist"), []byte(`{}`), 0o644)
	if wrote, err := WriteDefault(own, ""); wrote || err != nil {
		t.Errorf("a directory with a config of its own: wrote %v, %v", wrote, err)
	}
}
