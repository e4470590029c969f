package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// TestTracing: with tracing.endpoint set, each CRI call is a span that
// continues the caller's trace (W3C traceparent in the gRPC metadata, as
// kubelet sends it), with a child span per pod start phase and per pull.
// A graceful stop flushes them to the collector.
func TestTracing(t *testing.T) {
	recv, err := e2eenv.StartOTLPReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	addr := recv.Addr
	const extra = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
	p := newPodEnvOpts(t, e2eenv.DaemonOptions{ExtraConfig: fmt.Sprintf("[tracing]\nendpoint = %q\ninsecure = true\n", addr)}, extra)
	traceID, callerSpan := make([]byte, 16), make([]byte, 8)
	rand.Read(traceID)
	rand.Read(callerSpan)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", fmt.Sprintf("00-%x-%x-01", traceID, callerSpan))

	if _, err := p.images.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: extra}}); err != nil {
		t.Fatal(err)
	}
	cfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "traced", Namespace: "e2e", Uid: "traced"},
		LogDirectory: t.TempDir(),
	}
	pod, err := p.runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := p.runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{
		PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: busyboxImage}, Command: []string{"sleep", "1000"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	if err := p.daemon.Stop(); err != nil { // flushes the spans
		t.Fatal(err)
	}
	p.restart(t) // for the cleanups

	spans := recv.Spans()
	calls := map[string]*tracepb.Span{}
	children := map[string][]string{}
	for _, s := range spans {
		if !bytes.Equal(s.TraceId, traceID) {
			continue
		}
		if bytes.Equal(s.ParentSpanId, callerSpan) {
			calls[s.Name] = s
		}
	}
	for _, s := range spans {
		for name, call := range calls {
			if bytes.Equal(s.ParentSpanId, call.SpanId) {
				children[name] = append(children[name], s.Name)
			}
		}
	}
	for call, want := range map[string][]string{
		"runtime.v1.ImageService/PullImage":         {"image_pull"},
		"runtime.v1.RuntimeService/RunPodSandbox":   {"namespaces", "cni_add", "monitor_launch", "pod_init", "store"},
		"runtime.v1.RuntimeService/CreateContainer": {"image", "snapshot", "spec", "store"},
		"runtime.v1.RuntimeService/StartContainer":  {"runtime_start"},
	} {
		if _, ok := calls[call]; !ok {
			t.Errorf("no span %s in the caller's trace, as its child (%d spans received)", call, len(spans))
			continue
		}
		for _, w := range want {
			found := false
			for _, c := range children[call] {
				found = found || c == w
			}
			if !found {
				t.Errorf("%s: no child span %q (children: %v)", call, w, children[call])
			}
		}
	}
}
