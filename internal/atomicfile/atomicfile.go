// Package atomicfile replaces files so that a crash leaves the old content
// or the new, never a torn mix. Standard library only: the per-pod monitor
// links it.
package atomicfile

import "os"

// Write replaces path with b: written and synced to path.tmp, then renamed.
func Write(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
