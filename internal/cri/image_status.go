package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/image"
)

// ImageStatus reports one image, found by ID, ID prefix, tag or digest. An
// unknown image is not an error: the response simply has no image.
func (s *Service) ImageStatus(ctx context.Context, r *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	ref := r.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("image.image must name an image: %w", errdefs.ErrInvalidArgument)
	}
	img, err := s.images.Get(ref)
	if errdefs.IsNotFound(err) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: criImage(img)}
	if r.GetVerbose() {
		info, err := json.Marshal(map[string]any{
			"id":          img.ID,
			"chainID":     img.ChainID,
			"imageSpec":   img.Config,
			"repoTags":    img.RepoTags,
			"repoDigests": img.RepoDigests,
		})
		if err != nil {
			return nil, fmt.Errorf("encode image info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// criImage converts berth's image to CRI's. The image's user becomes Uid
// when numeric and Username otherwise; a group part is dropped.
func criImage(img image.Image) *runtime.Image {
	out := &runtime.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Pinned:      img.Pinned,
	}
	user, _, _ := strings.Cut(img.Config.Config.User, ":")
	if user != "" {
		if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
			out.Uid = &runtime.Int64Value{Value: uid}
		} else {
			out.Username = user
		}
	}
	return out
}
