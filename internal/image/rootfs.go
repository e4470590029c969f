package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// labelGCRoot keeps a container's writable snapshot (and through it the
// image's layers) from garbage collection while the container exists, even
// after its image is removed.
const labelGCRoot = "containerd.io/gc.root"

// MountRootfs prepares a writable snapshot named key on top of the image
// chainID and mounts it at target. On failure nothing is left behind.
//
// With uids and gids (a container in a user namespace), the image's layers
// are mounted idmapped and the writable layer belongs to the namespace's
// root, so the files' owners show inside as they are in the image.
func (s *Service) MountRootfs(ctx context.Context, key, chainID, target string, uids, gids []specs.LinuxIDMapping) error {
	return s.mountSnapshot(ctx, key, chainID, target, false, uids, gids)
}

// MountView mounts a read-only view of the image chainID at target, under
// snapshot key (an image volume), idmapped like MountRootfs's with uids
// and gids; UnmountRootfs undoes it.
func (s *Service) MountView(ctx context.Context, key, chainID, target string, uids, gids []specs.LinuxIDMapping) error {
	return s.mountSnapshot(ctx, key, chainID, target, true, uids, gids)
}

// idMapLabel is the snapshotters' form of ID mappings: "ctr:host:size,…".
func idMapLabel(maps []specs.LinuxIDMapping) string {
	parts := make([]string, len(maps))
	for i, m := range maps {
		parts[i] = fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
	}
	return strings.Join(parts, ",")
}

// CanIDMap says whether snapshots of the named snapshotter can be mounted
// with their owners mapped into a user namespace.
func CanIDMap(snapshotter string) bool { return snapshotter == "overlayfs" }

func (s *Service) mountSnapshot(ctx context.Context, key, chainID, target string, readonly bool, uids, gids []specs.LinuxIDMapping) (retErr error) {
	ctx = namespaces.WithNamespace(ctx, namespace)
	labels := map[string]string{labelGCRoot: time.Now().UTC().Format(time.RFC3339)}
	idmapped := len(uids) > 0 || len(gids) > 0
	if idmapped && !CanIDMap(s.opts.Snapshotter) {
		return fmt.Errorf("the %s snapshotter cannot map file owners into a user namespace: %w", s.opts.Snapshotter, errdefs.ErrFailedPrecondition)
	}
	if idmapped {
		labels[snapshots.LabelSnapshotUIDMapping] = idMapLabel(uids)
		labels[snapshots.LabelSnapshotGIDMapping] = idMapLabel(gids)
	}
	// An idmapped read-only view is an active snapshot mounted read-only:
	// only an overlay mount gets idmapped layers (a view of one layer is a
	// plain bind mount, and overlayfs itself cannot be idmapped).
	create := s.snapshot.Prepare
	if readonly && !idmapped {
		create = s.snapshot.View
	}
	mounts, err := create(ctx, key, chainID, snapshots.WithLabels(labels))
	if errdefs.IsAlreadyExists(err) {
		// A retry after a crash between Prepare and the record: reuse it.
		mounts, err = s.snapshot.Mounts(ctx, key)
	}
	if err != nil {
		return fmt.Errorf("prepare rootfs snapshot: %w", err)
	}
	defer func() {
		if retErr != nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_ = s.snapshot.Remove(ctx, key)
		}
	}()
	if readonly && idmapped {
		for i := range mounts {
			mounts[i].Options = append(mounts[i].Options, "ro")
		}
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := mount.All(mounts, target); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	return nil
}

// UnmountRootfs unmounts target and removes the snapshot key. Both steps
// tolerate having been done already.
func (s *Service) UnmountRootfs(ctx context.Context, key, target string) error {
	if err := Unmount(target); err != nil {
		return err
	}
	return s.RemoveSnapshot(ctx, key)
}

// Unmount unmounts whatever is mounted at target (nothing is fine).
func Unmount(target string) error {
	if err := mount.UnmountAll(target, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unmount rootfs: %w", err)
	}
	return nil
}

// RemoveSnapshot removes the snapshot key, which must not be mounted (a
// missing one is fine).
func (s *Service) RemoveSnapshot(ctx context.Context, key string) error {
	if err := s.snapshot.Remove(namespaces.WithNamespace(ctx, namespace), key); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove rootfs snapshot: %w", err)
	}
	select { // its directories go with the next collection: soon
	case s.collectSoon <- struct{}{}:
	default:
	}
	return nil
}

// SnapshotterName is the snapshotter container root file systems come from.
func (s *Service) SnapshotterName() string { return s.opts.Snapshotter }

// RootfsUsage is the disk a container's writable layer uses.
func (s *Service) RootfsUsage(ctx context.Context, key string) (bytes, inodes uint64, err error) {
	u, err := s.snapshot.Usage(namespaces.WithNamespace(ctx, namespace), key)
	if err != nil {
		return 0, 0, err
	}
	return uint64(u.Size), uint64(u.Inodes), nil
}
