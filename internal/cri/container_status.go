package cri

import (
	"context"
	"strings"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// ContainerStatus reports one container, found by ID or unique ID prefix.
func (s *Service) ContainerStatus(ctx context.Context, r *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	c, err := s.store.Containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatusResponse{Status: &runtime.ContainerStatus{
		Id:          c.ID,
		Metadata:    &runtime.ContainerMetadata{Name: c.Metadata.Name, Attempt: c.Metadata.Attempt},
		State:       containerState(c),
		CreatedAt:   c.CreatedAt.UnixNano(),
		StartedAt:   unixNanoOrZero(c.StartedAt),
		FinishedAt:  unixNanoOrZero(c.FinishedAt),
		ExitCode:    c.ExitCode,
		Image:       &runtime.ImageSpec{Image: c.Image},
		ImageRef:    c.ImageID,
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Labels,
		Annotations: c.Annotations,
		LogPath:     c.LogPath,
	}}, nil
}

// ListContainers lists containers matching the filter: ID (or unique
// prefix), state, pod sandbox ID (or prefix) and label selector.
func (s *Service) ListContainers(ctx context.Context, r *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	f := r.GetFilter()
	var items []*runtime.Container
	for _, c := range s.store.Containers.List() {
		if f.GetId() != "" && !matchesID(c.ID, f.GetId()) {
			continue
		}
		if f.GetPodSandboxId() != "" && !matchesID(c.SandboxID, f.GetPodSandboxId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != containerState(c) {
			continue
		}
		if !matchesLabels(c.Labels, f.GetLabelSelector()) {
			continue
		}
		items = append(items, &runtime.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     &runtime.ContainerMetadata{Name: c.Metadata.Name, Attempt: c.Metadata.Attempt},
			Image:        &runtime.ImageSpec{Image: c.Image},
			ImageRef:     c.ImageID,
			ImageId:      c.ImageID,
			State:        containerState(c),
			CreatedAt:    c.CreatedAt.UnixNano(),
			Labels:       c.Labels,
			Annotations:  c.Annotations,
		})
	}
	return &runtime.ListContainersResponse{Containers: items}, nil
}

func containerState(c store.Container) runtime.ContainerState {
	switch c.State() {
	case store.ContainerRunning:
		return runtime.ContainerState_CONTAINER_RUNNING
	case store.ContainerExited:
		return runtime.ContainerState_CONTAINER_EXITED
	default:
		return runtime.ContainerState_CONTAINER_CREATED
	}
}

func unixNanoOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// matchesID reports whether a list filter's ID selects id: kubelet sends full
// IDs, crictl users type prefixes.
func matchesID(id, filter string) bool { return strings.HasPrefix(id, filter) }

// matchesLabels reports whether labels hold every key/value of selector.
func matchesLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
