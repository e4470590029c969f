package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/criu"
)

// Checkpointing (KEP-2008's CheckpointContainer, KEP-5823's CheckpointPod
// and RestorePod) needs CRIU. What can be answered without it is: the
// object exists, and whether CRIU can run here, checked at each call (it
// may be installed meanwhile). Writing and reading the checkpoint archive
// is not built yet; docs/architecture.md has the planned design.

// CheckpointContainer checks the container and CRIU.
func (s *Service) CheckpointContainer(ctx context.Context, r *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("container_id is empty: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.store.Containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.checkpointable(ctx); err != nil {
		return nil, fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	return nil, archiveNotBuilt()
}

// CheckpointPod checks the pod and CRIU.
func (s *Service) CheckpointPod(ctx context.Context, r *runtime.CheckpointPodRequest) (*runtime.CheckpointPodResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("pod_sandbox_id is empty: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := s.store.Sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if err := s.checkpointable(ctx); err != nil {
		return nil, fmt.Errorf("checkpoint pod %s: %w", sb.ID, err)
	}
	return nil, archiveNotBuilt()
}

// RestorePod checks CRIU.
func (s *Service) RestorePod(ctx context.Context, r *runtime.RestorePodRequest) (*runtime.RestorePodResponse, error) {
	if r.GetCheckpointPath() == "" {
		return nil, fmt.Errorf("checkpoint_path is empty: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.checkpointable(ctx); err != nil {
		return nil, fmt.Errorf("restore pod from %s: %w", r.GetCheckpointPath(), err)
	}
	return nil, archiveNotBuilt()
}

// checkpointable is nil when CRIU can run here, else a FailedPrecondition
// naming the CRIU binary and why it cannot.
func (s *Service) checkpointable(ctx context.Context) error {
	if _, err := criu.Check(ctx, s.live.Load().criuPath); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func archiveNotBuilt() error {
	return status.Error(codes.Unimplemented, "CRIU is usable, but berth does not write or read checkpoint archives yet")
}
