package e2e

import (
	"errors"
	"io"
	"slices"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// drain reads a Stream* call to its end and returns the IDs it sent.
func drain[R any](t *testing.T, what string, recv func() (R, error), ids func(R) []string) []string {
	t.Helper()
	var out []string
	for {
		r, err := recv()
		if errors.Is(err, io.EOF) {
			slices.Sort(out)
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out = append(out, ids(r)...)
	}
}

func sorted(ids []string) []string { slices.Sort(ids); return ids }

// TestListStreams: each Stream* call (kubelet's CRIListStreaming) sends
// what its unary List twin answers, for the same filter, and ends.
func TestListStreams(t *testing.T) {
	p := newPodEnv(t)
	podID, podCfg := p.runPod(t, "streams")
	running := p.createContainer(t, podID, podCfg, "running", "sleep", "1000")
	exited := p.createContainer(t, podID, podCfg, "exited", "true")
	p.start(t, running)
	p.start(t, exited)
	p.waitExited(t, exited)
	ctx := t.Context()

	pods, err := p.runtime.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, sb := range pods.Items {
		want = append(want, sb.Id)
	}
	ps, err := p.runtime.StreamPodSandboxes(ctx, &runtime.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := drain(t, "StreamPodSandboxes", ps.Recv, func(r *runtime.StreamPodSandboxesResponse) (ids []string) {
		for _, sb := range r.PodSandboxes {
			ids = append(ids, sb.Id)
		}
		return ids
	})
	if !slices.Equal(got, sorted(want)) {
		t.Errorf("StreamPodSandboxes %v, ListPodSandbox %v", got, want)
	}

	for _, filter := range []*runtime.ContainerFilter{
		nil,
		{State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING}},
		{LabelSelector: map[string]string{"c": "exited"}},
	} {
		list, err := p.runtime.ListContainers(ctx, &runtime.ListContainersRequest{Filter: filter})
		if err != nil {
			t.Fatal(err)
		}
		want = nil
		for _, c := range list.Containers {
			want = append(want, c.Id)
		}
		cs, err := p.runtime.StreamContainers(ctx, &runtime.StreamContainersRequest{Filter: filter})
		if err != nil {
			t.Fatal(err)
		}
		got = drain(t, "StreamContainers", cs.Recv, func(r *runtime.StreamContainersResponse) (ids []string) {
			for _, c := range r.Containers {
				ids = append(ids, c.Id)
			}
			return ids
		})
		if !slices.Equal(got, sorted(want)) || len(got) == 0 {
			t.Errorf("filter %v: StreamContainers %v, ListContainers %v", filter, got, want)
		}
	}

	stats, err := p.runtime.StreamContainerStats(ctx, &runtime.StreamContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	got = drain(t, "StreamContainerStats", stats.Recv, func(r *runtime.StreamContainerStatsResponse) (ids []string) {
		for _, s := range r.ContainerStats {
			ids = append(ids, s.GetAttributes().GetId())
		}
		return ids
	})
	unary, err := p.runtime.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	want = nil
	for _, s := range unary.Stats {
		want = append(want, s.GetAttributes().GetId())
	}
	if !slices.Equal(got, sorted(want)) || !slices.Contains(got, running) {
		t.Errorf("StreamContainerStats %v, ListContainerStats %v", got, want)
	}

	podStats, err := p.runtime.StreamPodSandboxStats(ctx, &runtime.StreamPodSandboxStatsRequest{Filter: &runtime.PodSandboxStatsFilter{Id: podID}})
	if err != nil {
		t.Fatal(err)
	}
	got = drain(t, "StreamPodSandboxStats", podStats.Recv, func(r *runtime.StreamPodSandboxStatsResponse) (ids []string) {
		for _, s := range r.PodSandboxStats {
			ids = append(ids, s.GetAttributes().GetId())
		}
		return ids
	})
	if !slices.Equal(got, []string{podID}) {
		t.Errorf("StreamPodSandboxStats %v, want the pod", got)
	}

	metrics, err := p.runtime.StreamPodSandboxMetrics(ctx, &runtime.StreamPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got = drain(t, "StreamPodSandboxMetrics", metrics.Recv, func(r *runtime.StreamPodSandboxMetricsResponse) (ids []string) {
		for _, m := range r.PodSandboxMetrics {
			ids = append(ids, m.PodSandboxId)
		}
		return ids
	})
	if !slices.Contains(got, podID) {
		t.Errorf("StreamPodSandboxMetrics %v, want the pod among them", got)
	}

	images, err := p.images.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want = nil
	for _, img := range images.Images {
		want = append(want, img.Id)
	}
	is, err := p.images.StreamImages(ctx, &runtime.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got = drain(t, "StreamImages", is.Recv, func(r *runtime.StreamImagesResponse) (ids []string) {
		for _, img := range r.Images {
			ids = append(ids, img.Id)
		}
		return ids
	})
	if !slices.Equal(got, sorted(want)) || len(got) == 0 {
		t.Errorf("StreamImages %v, ListImages %v", got, want)
	}
	p.stopAndRemovePod(t, podID)
}
