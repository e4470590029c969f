// Package cgroup removes a container's cgroup directories when runc could
// not: a container that exits under load may still have a dying task when
// runc deletes it, and runc gives up after a few tries.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Remove deletes the cgroup at path (a cgroupfs path such as /berth/<id>)
// from every hierarchy: each v1 controller and the v2 tree. Missing
// directories are fine; a busy one is retried for up to about a second.
func Remove(path string) error {
	if path == "" || !strings.HasPrefix(path, "/") || path == "/" {
		return nil
	}
	dirs, err := filepath.Glob("/sys/fs/cgroup/*" + path)
	if err != nil {
		return err
	}
	dirs = append(dirs, "/sys/fs/cgroup"+path)
	var errs []error
	for _, d := range dirs {
		if err := rmdirRetry(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func rmdirRetry(dir string) error {
	delay := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && attempt < 7:
			time.Sleep(delay)
			delay *= 2
		default:
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
	}
}
