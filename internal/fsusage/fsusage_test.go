package fsusage

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOf(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), make([]byte, 64*1024), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := Of(dir)
	if err != nil {
		t.Fatal(err)
	}
	// dir, sub and one inode for the two links to a.
	if u.Inodes != 3 {
		t.Errorf("inodes = %d, want 3", u.Inodes)
	}
	if u.Bytes < 64*1024 || u.Bytes >= 2*64*1024 {
		t.Errorf("bytes = %d, want the 64 KiB file counted once", u.Bytes)
	}
	if u, err := Of(filepath.Join(dir, "missing")); err != nil || u != (Usage{}) {
		t.Errorf("missing dir: %+v, %v", u, err)
	}
}
