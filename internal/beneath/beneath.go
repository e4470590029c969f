// Package beneath opens files by a path from a request without leaving the
// directory the path belongs to: every component is resolved by the kernel
// beneath that directory (openat2 RESOLVE_BENEATH), so neither ".." nor a
// symlink planted inside it reaches out. Standard library and x/sys only:
// the per-pod monitor links it.
package beneath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrOutside means the path leaves its root.
var ErrOutside = errors.New("path leaves its directory")

// OpenFile opens rel beneath root with flag and perm, creating the
// directories on the way (dirPerm) when flag has O_CREATE. root itself is
// created (dirPerm) if missing: it is the caller's trusted directory.
func OpenFile(root, rel string, flag int, perm, dirPerm os.FileMode) (*os.File, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("root %q is not absolute", root)
	}
	rel = filepath.Clean(rel)
	if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") || rel == "." {
		return nil, fmt.Errorf("%q: %w", rel, ErrOutside)
	}
	create := flag&os.O_CREATE != 0
	if create {
		if err := os.MkdirAll(root, dirPerm); err != nil {
			return nil, err
		}
	}
	dirfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer func() { unix.Close(dirfd) }()
	parts := strings.Split(rel, "/")
	for _, part := range parts[:len(parts)-1] {
		next, err := openat(dirfd, part, unix.O_PATH|unix.O_DIRECTORY, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(dirfd, part, uint32(dirPerm.Perm())); err != nil && !errors.Is(err, unix.EEXIST) {
				return nil, &os.PathError{Op: "mkdir", Path: filepath.Join(root, rel), Err: err}
			}
			next, err = openat(dirfd, part, unix.O_PATH|unix.O_DIRECTORY, 0)
		}
		if err != nil {
			return nil, pathError(root, rel, err)
		}
		unix.Close(dirfd)
		dirfd = next
	}
	fd, err := openat(dirfd, parts[len(parts)-1], flag, uint32(perm.Perm()))
	if err != nil {
		return nil, pathError(root, rel, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, rel)), nil
}

func openat(dirfd int, name string, flag int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
			Flags:   uint64(flag) | unix.O_CLOEXEC,
			Mode:    uint64(mode),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		})
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return fd, err
	}
}

func pathError(root, rel string, err error) error {
	if errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%s: %w", filepath.Join(root, rel), ErrOutside)
	}
	return &os.PathError{Op: "open", Path: filepath.Join(root, rel), Err: err}
}
