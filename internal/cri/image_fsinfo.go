package cri

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/fsusage"
)

// ImageFsDir is where image layers are unpacked, relative to --root. kubelet
// watches this file system for image garbage collection.
const ImageFsDir = "snapshots"

// ImageFsInfo reports the bytes and inodes used by unpacked images.
func (s *Service) ImageFsInfo(ctx context.Context, r *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	dir := filepath.Join(s.cfg.Root, ImageFsDir)
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
