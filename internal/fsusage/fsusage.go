// Package fsusage measures how much disk a directory tree uses, the way du
// does: allocated blocks, each inode counted once however many hard links
// point at it, without crossing into other file systems.
package fsusage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Usage is a tree's footprint.
type Usage struct {
	Bytes  uint64 // allocated bytes (st_blocks × 512)
	Inodes uint64
}

// Of measures the tree at dir. A missing dir uses nothing. Entries that
// vanish during the walk (a container exiting) are skipped, not errors.
func Of(dir string) (Usage, error) {
	var u Usage
	root, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return u, err
	}
	rootDev := root.Sys().(*syscall.Stat_t).Dev
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Dev != rootDev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		key := inode{st.Dev, st.Ino}
		if seen[key] {
			return nil
		}
		seen[key] = true
		u.Inodes++
		u.Bytes += uint64(st.Blocks) * 512
		return nil
	})
	return u, err
}
