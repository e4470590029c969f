// Command readlatency measures how long kubelet's status reads take while
// containers are being made and removed: ContainerStatus and
// ListContainers latency (p50, p99), first on an idle runtime, then while
// -writers goroutines each create, start, stop and remove containers in a
// loop; and Version, which reads nothing, as the floor that scheduling
// alone sets under the load. berth and containerd (Debian's 1.6 package) run in the same run,
// with the same pod layout; -containerd "" measures berth alone.
//
//	go run ./bench/readlatency -berth bin/berth -testbin bin/testbin
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/bench/benchenv"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

const busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary")
	testbin := flag.String("testbin", "bin/testbin", "static testbin for the images")
	containerd := flag.String("containerd", "/usr/bin/containerd", `containerd binary ("" to measure berth alone)`)
	cache := flag.String("cache", "/var/cache/berth-e2e", "e2e cache (busybox package)")
	writers := flag.Int("writers", 8, "goroutines creating, starting, stopping and removing containers")
	steady := flag.Int("containers", 20, "running containers listed by every ListContainers")
	duration := flag.Duration("duration", 10*time.Second, "how long each phase reads")
	floorSocket := flag.String("serve-floor", "", "(internal) serve the floor's health check on this socket")
	flag.Parse()
	benchenv.SurviveClosedOutput()
	if *floorSocket != "" {
		if err := serveFloor(*floorSocket); err != nil {
			fmt.Fprintln(os.Stderr, "bench/readlatency: floor:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*berth, *testbin, *containerd, *cache, *writers, *steady, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "bench/readlatency:", err)
		os.Exit(1)
	}
}

// reads are what the client times, in each round: two status reads, a
// call of the runtime's that reads nothing, and a health check answered by
// another process (the floor the machine's scheduling sets).
var reads = []string{"ContainerStatus", "ListContainers", "Version", "floor (other process)"}

// figures are one runtime's latencies per phase ("idle", "under writes")
// and read ("ContainerStatus", "ListContainers").
type figures map[string]map[string][]time.Duration

func run(berthBin, testbin, containerdBin, cache string, writers, steady int, d time.Duration) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "berth-bench-reads-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env, err := benchenv.StartBerth(ctx, work, berthBin, testbin, cache)
	if err != nil {
		return err
	}
	defer env.Close()
	targets := []struct{ name, socket string }{{"berth", env.Berth.Socket}}
	if containerdBin != "" {
		cd, err := benchenv.StartContainerd(ctx, containerdBin, filepath.Join(work, "containerd"), env.Registry.HostsDir, env.CNIConfDir)
		if err != nil {
			return err
		}
		defer cd.Stop()
		targets = append(targets, struct{ name, socket string }{"containerd", cd.Socket})
	}
	floor, err := startFloor(ctx, filepath.Join(work, "floor.sock"))
	if err != nil {
		return err
	}
	defer floor.Close()
	results := map[string]figures{}
	for _, t := range targets {
		f, err := measure(ctx, t.socket, floor.client, writers, steady, d)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		results[t.name] = f
	}
	fmt.Printf("status reads, idle and while %d goroutines create, start, stop and remove containers (%s each; ms: p50 / p99)\n", writers, d)
	fmt.Printf("  %-21s %-13s", "read", "phase")
	for _, t := range targets {
		fmt.Printf(" %17s", t.name)
	}
	if len(targets) == 2 {
		fmt.Printf(" %14s", "p99 ratio")
	}
	fmt.Println()
	for _, read := range reads {
		for _, phase := range []string{"idle", "under writes"} {
			fmt.Printf("  %-21s %-13s", read, phase)
			var p99s []time.Duration
			for _, t := range targets {
				ds := results[t.name][phase][read]
				fmt.Printf("   %6.2f / %6.2f", benchenv.Ms(benchenv.Percentile(ds, 50)), benchenv.Ms(benchenv.Percentile(ds, 99)))
				p99s = append(p99s, benchenv.Percentile(ds, 99))
			}
			if len(p99s) == 2 {
				fmt.Printf(" %14.2f", float64(p99s[0])/float64(p99s[1]))
			}
			fmt.Println()
		}
	}
	if hwm, err := peakRSS(env.Berth.Root); err == nil {
		fmt.Printf("  berth daemon peak RSS: %.1f MB\n", float64(hwm)/1024)
	}
	for _, t := range targets {
		for _, read := range reads {
			idle, busy := benchenv.Percentile(results[t.name]["idle"][read], 99), benchenv.Percentile(results[t.name]["under writes"][read], 99)
			fmt.Printf("  %s %s p99 under writes / idle: %.2f\n", t.name, read, float64(busy)/float64(idle))
		}
	}
	return nil
}

// measure sets up a pod with steady running containers, then reads for d
// idle and for d under writes.
func measure(ctx context.Context, socket string, floor healthpb.HealthClient, writers, steady int, d time.Duration) (figures, error) {
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	is := runtime.NewImageServiceClient(conn)
	for _, ref := range []string{busybox, "registry.k8s.io/pause:3.6"} {
		if _, err := is.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	cfg := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "reads", Namespace: "bench", Uid: "reads"},
		Linux:    &runtime.LinuxPodSandboxConfig{},
	}
	pod, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return nil, err
	}
	defer func() {
		rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	}()
	var n atomic.Int64
	container := func() (string, error) {
		r, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: fmt.Sprintf("c%d", n.Add(1))},
				Image:    &runtime.ImageSpec{Image: busybox},
				Command:  []string{"sleep", "1000"},
			}})
		if err != nil {
			return "", fmt.Errorf("CreateContainer: %w", err)
		}
		if _, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
			return "", fmt.Errorf("StartContainer: %w", err)
		}
		return r.ContainerId, nil
	}
	var target string
	for range steady {
		if target, err = container(); err != nil {
			return nil, err
		}
	}
	read := func(phase string, f figures) error {
		f[phase] = map[string][]time.Duration{}
		for end := time.Now().Add(d); time.Now().Before(end); {
			start := time.Now()
			if _, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: target}); err != nil {
				return err
			}
			f[phase]["ContainerStatus"] = append(f[phase]["ContainerStatus"], time.Since(start))
			start = time.Now()
			if _, err := rt.ListContainers(ctx, &runtime.ListContainersRequest{}); err != nil {
				return err
			}
			f[phase]["ListContainers"] = append(f[phase]["ListContainers"], time.Since(start))
			// The floor: a call that reads nothing, on the same connection
			// and machine, shows what scheduling alone costs under the load.
			start = time.Now()
			if _, err := rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
				return err
			}
			f[phase]["Version"] = append(f[phase]["Version"], time.Since(start))
			start = time.Now()
			if _, err := floor.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			f[phase][reads[3]] = append(f[phase][reads[3]], time.Since(start))
		}
		return nil
	}
	f := figures{}
	if err := read("idle", f); err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id, err := container()
				if err == nil {
					_, err = rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 0})
				}
				if err == nil {
					_, err = rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id})
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	err = read("under writes", f)
	close(stop)
	wg.Wait()
	return f, errors.Join(append(errs, err)...)
}

// peakRSS is the berth daemon's VmHWM in kB; its PID is in the root's
// lock file.
func peakRSS(root string) (int, error) {
	b, err := os.ReadFile(filepath.Join(root, "berth.lock"))
	if err != nil {
		return 0, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%s/status", strings.TrimSpace(string(b))))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, errors.New("no VmHWM")
}
