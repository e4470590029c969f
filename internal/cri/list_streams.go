package cri

import (
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The Stream* calls answer what their unary List twins answer, for the
// same filter, in messages of bounded size, so that a node with many
// (dead) containers is not cut off by gRPC's message size limit
// (kubelet's CRIListStreaming). Each lists once, from one snapshot of the
// store, and then sends: no item twice, none missed. The stream ends
// (EOF) after the last item; an empty list sends no message.

// streamChunkBytes bounds one message's items (gRPC's default limit is
// 4 MiB; kubelet's 16 MiB).
const streamChunkBytes = 1 << 20

// sendChunks sends items in messages of at most streamChunkBytes each (an
// item larger than that goes alone).
func sendChunks[T proto.Message](items []T, send func([]T) error) error {
	start, size := 0, 0
	for i, item := range items {
		n := proto.Size(item) + 8 // the field's tag and length
		if i > start && size+n > streamChunkBytes {
			if err := send(items[start:i]); err != nil {
				return err
			}
			start, size = i, 0
		}
		size += n
	}
	if start < len(items) {
		return send(items[start:])
	}
	return nil
}

// StreamPodSandboxes is ListPodSandbox, streamed.
func (s *Service) StreamPodSandboxes(r *runtime.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxesResponse]) error {
	resp, err := s.ListPodSandbox(stream.Context(), &runtime.ListPodSandboxRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetItems(), func(items []*runtime.PodSandbox) error {
		return stream.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: items})
	})
}

// StreamContainers is ListContainers, streamed.
func (s *Service) StreamContainers(r *runtime.StreamContainersRequest, stream grpc.ServerStreamingServer[runtime.StreamContainersResponse]) error {
	resp, err := s.ListContainers(stream.Context(), &runtime.ListContainersRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetContainers(), func(items []*runtime.Container) error {
		return stream.Send(&runtime.StreamContainersResponse{Containers: items})
	})
}

// StreamContainerStats is ListContainerStats, streamed.
func (s *Service) StreamContainerStats(r *runtime.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamContainerStatsResponse]) error {
	resp, err := s.ListContainerStats(stream.Context(), &runtime.ListContainerStatsRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetStats(), func(items []*runtime.ContainerStats) error {
		return stream.Send(&runtime.StreamContainerStatsResponse{ContainerStats: items})
	})
}

// StreamPodSandboxStats is ListPodSandboxStats, streamed.
func (s *Service) StreamPodSandboxStats(r *runtime.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxStatsResponse]) error {
	resp, err := s.ListPodSandboxStats(stream.Context(), &runtime.ListPodSandboxStatsRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetStats(), func(items []*runtime.PodSandboxStats) error {
		return stream.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: items})
	})
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics, streamed.
func (s *Service) StreamPodSandboxMetrics(_ *runtime.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxMetricsResponse]) error {
	resp, err := s.ListPodSandboxMetrics(stream.Context(), &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetPodMetrics(), func(items []*runtime.PodSandboxMetrics) error {
		return stream.Send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: items})
	})
}

// StreamImages is ListImages, streamed.
func (s *Service) StreamImages(r *runtime.StreamImagesRequest, stream grpc.ServerStreamingServer[runtime.StreamImagesResponse]) error {
	resp, err := s.ListImages(stream.Context(), &runtime.ListImagesRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetImages(), func(items []*runtime.Image) error {
		return stream.Send(&runtime.StreamImagesResponse{Images: items})
	})
}
