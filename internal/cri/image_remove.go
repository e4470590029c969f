package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes the image a reference resolves to — every tag and
// digest of it, as kubelet and critest expect — and garbage-collects its
// blobs and snapshots. CRI makes it idempotent: an unknown image succeeds.
func (s *Service) RemoveImage(ctx context.Context, r *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	ref := r.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("image.image must name an image: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.images.Remove(ctx, ref); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}
