package benchenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// Busybox is the image benchmark containers run.
const Busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

// LifecycleSteps are the calls Cycle times, in order.
var LifecycleSteps = []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}

// Pull pulls images through CRI, so that no pull is timed.
func Pull(ctx context.Context, socket string, refs ...string) error {
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	is := runtime.NewImageServiceClient(conn)
	for _, ref := range refs {
		if _, err := is.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	return nil
}

// Cycle runs one pod (named name; on the host's network when hostNetwork)
// with one busybox container through its whole life, appending each
// call's duration to times[step].
func Cycle(ctx context.Context, socket, name string, hostNetwork bool, times map[string][]time.Duration) error {
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	cfg := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: name},
		Linux:    &runtime.LinuxPodSandboxConfig{},
	}
	if hostNetwork {
		cfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}
	}
	var podID, ctrID string
	for _, s := range []struct {
		step string
		f    func() error
	}{
		{"RunPodSandbox", func() error {
			r, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
			podID = r.GetPodSandboxId()
			return err
		}},
		{"CreateContainer", func() error {
			r, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: cfg,
				Config: &runtime.ContainerConfig{
					Metadata: &runtime.ContainerMetadata{Name: "c"},
					Image:    &runtime.ImageSpec{Image: Busybox},
					Command:  []string{"sleep", "1000"},
				}})
			ctrID = r.GetContainerId()
			return err
		}},
		{"StartContainer", func() error {
			_, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctrID})
			return err
		}},
		{"StopContainer", func() error {
			_, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: ctrID, Timeout: 0})
			return err
		}},
		{"RemoveContainer", func() error {
			_, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: ctrID})
			return err
		}},
		{"StopPodSandbox", func() error {
			_, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID})
			return err
		}},
		{"RemovePodSandbox", func() error {
			_, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
			return err
		}},
	} {
		start := time.Now()
		if err := s.f(); err != nil {
			return fmt.Errorf("%s: %w", s.step, err)
		}
		times[s.step] = append(times[s.step], time.Since(start))
	}
	return nil
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Percentile is the p-th percentile of ds by nearest rank (0 for none): the
// smallest sample that at least p % of the samples do not exceed. Below 100
// samples the 99th is the largest.
func Percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (len(s)*p + 99) / 100 // ceil(len·p/100), from 1
	return s[max(0, min(len(s), rank)-1)]
}

// TrimmedMean is the mean of ds without its lowest and highest quarter
// (the interquartile mean): steadier than the median when comparing
// shifts far smaller than the spread.
func TrimmedMean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	mid := s[len(s)/4 : len(s)-len(s)/4]
	if len(mid) == 0 {
		mid = s
	}
	var sum time.Duration
	for _, d := range mid {
		sum += d
	}
	return sum / time.Duration(len(mid))
}

// SmapsRollup returns the kB fields of /proc/PID/smaps_rollup (Rss, Pss,
// Private_Clean, Anonymous, …).
func SmapsRollup(pid int) (map[string]int, error) {
	return KBFields(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
}

// KBFields returns the "Name: N kB" fields of a /proc file such as
// smaps_rollup or meminfo, in kB.
func KBFields(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[2] == "kB" {
			n, _ := strconv.Atoi(fields[1])
			out[strings.TrimSuffix(fields[0], ":")] = n
		}
	}
	return out, sc.Err()
}
