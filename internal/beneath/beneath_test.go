package beneath

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenFileCreatesBeneath(t *testing.T) {
	root := filepath.Join(t.TempDir(), "logs") // missing: created
	f, err := OpenFile(root, "ctr/0.log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, err := os.Stat(filepath.Join(root, "ctr")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("parent directory: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(root, "ctr", "0.log")); err != nil {
		t.Fatal(err)
	}
}

func TestOpenFileStaysBeneath(t *testing.T) {
	outside := t.TempDir()
	root := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "passwd.log")); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"escape/x.log", "escape/new/x.log", "passwd.log", "../x.log", "/etc/x.log", "a/../../x.log"} {
		f, err := OpenFile(root, rel, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640, 0o755)
		if err == nil {
			f.Close()
			t.Errorf("%s: opened %s", rel, f.Name())
			continue
		}
		if !errors.Is(err, ErrOutside) {
			t.Errorf("%s: %v, want ErrOutside", rel, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("made %v outside the root", entries)
	}
}
