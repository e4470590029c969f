// Package atomicfile replaces files so that a crash leaves the old content
// or the new, never a torn mix. Standard library only: the per-pod monitor
// links it.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with b: written and synced to a temporary file of
// its own in path's directory (concurrent writers never share one), then
// renamed over path.
func Write(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
