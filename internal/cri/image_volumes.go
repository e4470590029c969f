package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// Image volumes (Mount.image): an image's file system, mounted read-only
// in the container. Each is a read-only view snapshot of the image, mounted
// at <bundle>/volumes/<mount index> under snapshot key <container>-vol-<n>,
// so that removing the container — or recovery, for one never recorded —
// finds them without a record.

func imageVolumeKey(containerID string, n int) string {
	return containerID + "-vol-" + strconv.Itoa(n)
}

// mountImageVolumes mounts the image volumes among mounts and returns, by
// mount index, the host directory each binds (the view, or image_sub_path
// in it). It records each volume's image ID in its ImageSpec.image_ref.
func (s *Service) mountImageVolumes(ctx context.Context, c store.Container, mounts []*runtime.Mount, uids, gids []specs.LinuxIDMapping) (map[int]string, error) {
	out := map[int]string{}
	for i, m := range mounts {
		if m.GetImage() == nil {
			continue
		}
		if m.GetHostPath() != "" {
			return nil, fmt.Errorf("mounts[%d]: host_path and image exclude each other: %w", i, errdefs.ErrInvalidArgument)
		}
		if !m.GetReadonly() {
			return nil, fmt.Errorf("mounts[%d]: an image volume is read-only: set readonly: %w", i, errdefs.ErrInvalidArgument)
		}
		if m.GetPropagation() != runtime.MountPropagation_PROPAGATION_PRIVATE {
			return nil, fmt.Errorf("mounts[%d]: an image volume's propagation is private: %w", i, errdefs.ErrInvalidArgument)
		}
		sub := m.GetImageSubPath()
		if sub != "" && !filepath.IsLocal(sub) {
			return nil, fmt.Errorf("mounts[%d].image_sub_path %q must be a relative path inside the image: %w", i, sub, errdefs.ErrInvalidArgument)
		}
		ref := m.GetImage().GetImage()
		img, err := s.images.Get(ref)
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("mounts[%d].image %q is not present: pull it first: %w", i, ref, errdefs.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		target := filepath.Join(c.Bundle, "volumes", strconv.Itoa(i))
		if err := s.images.MountView(ctx, imageVolumeKey(c.ID, i), img.ChainID.String(), target, uids, gids); err != nil {
			return nil, fmt.Errorf("mounts[%d]: image volume %s: %w", i, ref, err)
		}
		m.Image.ImageRef = img.ID
		src := target
		if sub != "" {
			// Resolved inside the view: the image's symlinks cannot lead out.
			if src, err = securejoin.SecureJoin(target, sub); err != nil {
				return nil, fmt.Errorf("mounts[%d].image_sub_path %q: %w", i, sub, err)
			}
			if _, err := os.Stat(src); err != nil {
				return nil, fmt.Errorf("mounts[%d].image_sub_path %q is not in image %s: %w", i, sub, ref, errdefs.ErrInvalidArgument)
			}
		}
		out[i] = src
	}
	return out, nil
}

// unmountImageVolumes undoes mountImageVolumes for c (idempotent).
func (s *Service) unmountImageVolumes(ctx context.Context, c store.Container) error {
	dir := filepath.Join(c.Bundle, "volumes")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := s.images.UnmountRootfs(ctx, imageVolumeKey(c.ID, n), filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("container %s image volume %d: %w", c.ID, n, err)
		}
	}
	return nil
}
