package e2e

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/criu"
)

// TestCheckpointContainerSaysWhatIsMissing: kubelet's checkpoint API
// (POST /checkpoint/…) reaches CheckpointContainer. Without a usable CRIU —
// missing, or failing its own check, as Debian 12's does on these kernels —
// the answer is FailedPrecondition naming CRIU and why; with one, an honest
// Unimplemented (the archive is not built yet). The container runs on.
func TestCheckpointContainerSaysWhatIsMissing(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "checkpoint")
	ctr := p.createContainer(t, pod, podCfg, "c", "sleep", "1000")
	p.start(t, ctr)
	_, err := p.runtime.CheckpointContainer(t.Context(), &runtime.CheckpointContainerRequest{ContainerId: ctr, Location: t.TempDir() + "/c.tar"})
	if _, hostErr := criu.Check(t.Context(), "criu"); hostErr != nil {
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "CRIU") || !strings.Contains(err.Error(), "criu") {
			t.Errorf("CheckpointContainer without a usable CRIU (%v): %v, want FailedPrecondition naming it", hostErr, err)
		}
	} else if status.Code(err) != codes.Unimplemented {
		t.Errorf("CheckpointContainer with a usable CRIU: %v, want Unimplemented", err)
	}
	if st := p.status(t, ctr); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container %s after the checkpoint call", st.State)
	}
	_, err = p.runtime.CheckpointContainer(t.Context(), &runtime.CheckpointContainerRequest{ContainerId: "no-such-container"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("CheckpointContainer of an unknown container: %v, want NotFound", err)
	}
}
