package cri

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// TestStreamContainersPastTheMessageLimit: 10 000 container records with
// large labels are more than one ListContainers answer can carry within
// kubelet's 16 MiB limit (ResourceExhausted, as the client's limit says);
// StreamContainers sends them all, each once, in bounded messages, with the
// same filters as the unary call.
func TestStreamContainersPastTheMessageLimit(t *testing.T) {
	f := newSeamFixture(t)
	sb := f.addPod(t, true)
	big := strings.Repeat("x", 2048)
	const n = 10000
	var wg sync.WaitGroup
	for w := range 50 { // concurrent writers share fsyncs
		wg.Go(func() {
			for i := w; i < n; i += 50 {
				c := store.Container{
					ID: store.NewID(), SandboxID: sb.ID, Metadata: store.ContainerMetadata{Name: fmt.Sprint(i)},
					Labels: map[string]string{"big": big, "parity": fmt.Sprint(i % 2)}, CreatedAt: time.Now().UTC(),
				}
				c.StartedAt, c.FinishedAt = c.CreatedAt, c.CreatedAt // dead, as kubelet's many are
				if err := f.store.Containers.Add(c); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	limit := grpc.MaxCallRecvMsgSize(16 << 20)
	_, err := f.runtime.ListContainers(t.Context(), &runtime.ListContainersRequest{}, limit)
	wantCode(t, err, codes.ResourceExhausted)

	for _, tc := range []struct {
		filter *runtime.ContainerFilter
		want   int
	}{
		{nil, n},
		{&runtime.ContainerFilter{LabelSelector: map[string]string{"parity": "1"}}, n / 2},
		{&runtime.ContainerFilter{State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING}}, 0},
	} {
		stream, err := f.runtime.StreamContainers(t.Context(), &runtime.StreamContainersRequest{Filter: tc.filter}, limit)
		if err != nil {
			t.Fatal(err)
		}
		seen, messages := map[string]bool{}, 0
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("filter %v: after %d messages: %v", tc.filter, messages, err)
			}
			messages++
			for _, c := range resp.Containers {
				if seen[c.Id] {
					t.Fatalf("container %s sent twice", c.Id)
				}
				seen[c.Id] = true
			}
		}
		if len(seen) != tc.want {
			t.Errorf("filter %v: streamed %d containers, want %d", tc.filter, len(seen), tc.want)
		}
		if tc.want == n && messages < 20 {
			t.Errorf("%d containers of over 2 KiB each came in %d messages, want chunks of at most 1 MiB", n, messages)
		}
	}
}

// TestSendChunks: chunks stay within the bound, keep order, lose nothing.
func TestSendChunks(t *testing.T) {
	var items []*runtime.Container
	for i := range 100 {
		items = append(items, &runtime.Container{Id: fmt.Sprint(i), Labels: map[string]string{"l": strings.Repeat("y", i*1000)}})
	}
	items = append(items, &runtime.Container{Id: "huge", Labels: map[string]string{"l": strings.Repeat("z", 2*streamChunkBytes)}})
	var got []string
	err := sendChunks(items, func(chunk []*runtime.Container) error {
		size := 0
		for _, c := range chunk {
			got = append(got, c.Id)
			size += len(c.Labels["l"])
		}
		if len(chunk) > 1 && size > streamChunkBytes {
			t.Errorf("chunk of %d items, %d bytes of labels", len(chunk), size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(items) || got[0] != "0" || got[len(got)-1] != "huge" {
		t.Fatalf("sent %d items (%v … %v)", len(got), got[:1], got[len(got)-1:])
	}
}
