package cri

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/fsusage"
)

// ImageFsInfo reports the bytes and inodes used by the snapshotter's
// directory, where image layers and container writable layers live; kubelet
// watches it for image garbage collection.
func (s *Service) ImageFsInfo(ctx context.Context, r *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	dir := s.imageFsDir()
	u, err := fsusage.Of(dir)
	if err != nil {
		return nil, fmt.Errorf("measure image file system: %w", err)
	}
	usage := &runtime.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: dir},
		UsedBytes:  &runtime.UInt64Value{Value: u.Bytes},
		InodesUsed: &runtime.UInt64Value{Value: u.Inodes},
	}
	return &runtime.ImageFsInfoResponse{
		ImageFilesystems:     []*runtime.FilesystemUsage{usage},
		ContainerFilesystems: []*runtime.FilesystemUsage{usage},
	}, nil
}

// imageFsDir is the snapshotter's directory: image layers and container
// writable layers.
func (s *Service) imageFsDir() string {
	return filepath.Join(s.cfg.Root, "snapshots", s.cfg.Image.Snapshotter)
}
