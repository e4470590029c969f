// Command podlifecycle times the pod and container lifecycle through CRI,
// berth against containerd (Debian's 1.6 package) in the same run, serially:
// RunPodSandbox, CreateContainer, StartContainer, StopContainer (timeout 0),
// RemoveContainer, StopPodSandbox, RemovePodSandbox. Both attach pods to
// the same bridge + portmap + loopback CNI conflist; containerd also runs
// its pause container, berth has none by design. Then, per runtime, the
// wall time of -parallel pods each started with one running container all
// at once (RunPodSandbox, CreateContainer, StartContainer), and of stopping
// and removing them all at once.
//
//	go run ./bench/podlifecycle -berth bin/berth -testbin bin/testbin -iterations 20 -parallel 100
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/bench/benchenv"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

var steps = append(slices.Clone(benchenv.LifecycleSteps), hostNetStep)

// hostNetStep is RunPodSandbox of a host-network pod: no CNI (containerd
// still starts its pause container).
const hostNetStep = "RunPodSandbox hostnet"

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary")
	testbin := flag.String("testbin", "bin/testbin", "static testbin for the images")
	containerd := flag.String("containerd", "/usr/bin/containerd", "containerd binary")
	cache := flag.String("cache", "/var/cache/berth-e2e", "e2e cache (busybox package)")
	iterations := flag.Int("iterations", 20, "pods per runtime")
	parallel := flag.Int("parallel", 100, "pods started at once per runtime for the wall-time figure (0: skip)")
	observe := flag.Bool("observe", false, "run berth with metrics (scraped every second) and tracing (to a collector in this process) on")
	extraConfig := flag.String("berth-config", "", "TOML tables appended to berth's config, e.g. to compare handlers")
	flag.Parse()
	benchenv.SurviveClosedOutput()
	if err := run(*berth, *testbin, *containerd, *cache, *iterations, *parallel, *observe, *extraConfig); err != nil {
		fmt.Fprintln(os.Stderr, "bench/podlifecycle:", err)
		os.Exit(1)
	}
}

func run(berthBin, testbin, containerdBin, cache string, iterations, parallel int, observe bool, extraConfig string) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "berth-bench-pods-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	extra := []string{extraConfig}
	var sink *e2eenv.OTLPReceiver
	if observe {
		if sink, err = e2eenv.StartOTLPReceiver(); err != nil {
			return err
		}
		defer sink.Close()
		extra = append(extra, "[metrics]\naddress = \"127.0.0.1:0\"\n", fmt.Sprintf("[tracing]\nendpoint = %q\ninsecure = true\n", sink.Addr))
	}
	env, err := benchenv.StartBerth(ctx, work, berthBin, testbin, cache, extra...)
	if err != nil {
		return err
	}
	defer env.Close()
	if observe {
		_, stop, err := benchenv.ScrapeEverySecond(env.Berth)
		if err != nil {
			return err
		}
		defer func() {
			fmt.Printf("observed: berth's /metrics scraped %d times, %d spans received (batched: the last ones at exit)\n", stop(), len(sink.Spans()))
		}()
	}
	bd, hosts, netd := env.Berth, env.Registry.HostsDir, env.CNIConfDir
	cd, err := benchenv.StartContainerd(ctx, containerdBin, filepath.Join(work, "containerd"), hosts, netd)
	if err != nil {
		return err
	}
	defer cd.Stop()

	type target struct {
		name   string
		socket string
		times  map[string][]time.Duration
	}
	targets := []*target{{name: "berth", socket: bd.Socket}, {name: "containerd", socket: cd.Socket}}
	for _, t := range targets {
		t.times = map[string][]time.Duration{}
		if err := benchenv.Pull(ctx, t.socket, benchenv.Busybox, "registry.k8s.io/pause:3.6"); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	for i := range iterations {
		for j := range targets {
			t := targets[(i+j)%len(targets)]
			if err := cycle(ctx, t.socket, i, t.times); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	fmt.Printf("pod + container lifecycle through CRI, %d serial iterations each (ms: median / p90)\n", iterations)
	fmt.Printf("  %-18s %16s %16s %8s\n", "step", "berth", "containerd", "ratio")
	lifecycle := map[string][]time.Duration{}
	for _, step := range append(slices.Clone(steps), "container lifecycle") {
		var cells []string
		var medians []time.Duration
		for _, t := range targets {
			ds := t.times[step]
			if step == "container lifecycle" {
				ds = lifecycle[t.name]
			}
			med, p90 := benchenv.Percentile(ds, 50), benchenv.Percentile(ds, 90)
			medians = append(medians, med)
			cells = append(cells, fmt.Sprintf("%6.1f / %6.1f", benchenv.Ms(med), benchenv.Ms(p90)))
		}
		fmt.Printf("  %-18s %16s %16s %8.2f\n", step, cells[0], cells[1], float64(medians[0])/float64(medians[1]))
		if step == "RemovePodSandbox" {
			for _, t := range targets {
				for k := range t.times["CreateContainer"] {
					lifecycle[t.name] = append(lifecycle[t.name], t.times["CreateContainer"][k]+t.times["StartContainer"][k]+t.times["StopContainer"][k]+t.times["RemoveContainer"][k])
				}
			}
		}
	}
	fmt.Println("  (container lifecycle = create + start + stop + remove, summed per iteration)")
	fmt.Println("  both: CNI bridge/portmap/loopback; containerd also runs a pause container, berth pins namespaces instead")
	fmt.Printf("  berth's RunPodSandbox without networking / containerd's with CNI: %.2f\n",
		float64(benchenv.Percentile(targets[0].times[hostNetStep], 50))/float64(benchenv.Percentile(targets[1].times["RunPodSandbox"], 50)))
	if parallel <= 0 {
		return nil
	}
	fmt.Printf("%d pods at once, each with one running container (wall time, s)\n", parallel)
	fmt.Printf("  %-18s %10s %10s %8s\n", "phase", "berth", "containerd", "ratio")
	walls := map[string][2]time.Duration{}
	for _, t := range targets {
		up, down, err := burst(ctx, t.socket, parallel)
		if err != nil {
			return fmt.Errorf("%s: %d pods at once: %w", t.name, parallel, err)
		}
		for i, d := range []time.Duration{up, down} {
			phase := []string{"start all", "stop+remove all"}[i]
			w := walls[phase]
			w[slices.Index(targets, t)] = d
			walls[phase] = w
		}
	}
	for _, phase := range []string{"start all", "stop+remove all"} {
		w := walls[phase]
		fmt.Printf("  %-18s %10.2f %10.2f %8.2f\n", phase, w[0].Seconds(), w[1].Seconds(), float64(w[0])/float64(w[1]))
	}
	return nil
}

// burst starts n pods with one container each, all at once, and then stops
// and removes them all at once, returning the wall time of each phase.
func burst(ctx context.Context, socket string, n int) (up, down time.Duration, err error) {
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	pods := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			cfg := &runtime.PodSandboxConfig{
				Metadata: &runtime.PodSandboxMetadata{Name: fmt.Sprintf("burst-%d", i), Namespace: "bench", Uid: fmt.Sprintf("burst-%d", i)},
				Linux:    &runtime.LinuxPodSandboxConfig{},
			}
			pod, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
			if err != nil {
				errs[i] = fmt.Errorf("RunPodSandbox: %w", err)
				return
			}
			pods[i] = pod.PodSandboxId
			ctr, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
				Config: &runtime.ContainerConfig{
					Metadata: &runtime.ContainerMetadata{Name: "c"},
					Image:    &runtime.ImageSpec{Image: benchenv.Busybox},
					Command:  []string{"sleep", "1000"},
				}})
			if err != nil {
				errs[i] = fmt.Errorf("CreateContainer: %w", err)
				return
			}
			if _, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
				errs[i] = fmt.Errorf("StartContainer: %w", err)
			}
		})
	}
	wg.Wait()
	up = time.Since(start)
	start = time.Now()
	for i := range n {
		if pods[i] == "" {
			continue
		}
		wg.Go(func() {
			// StopPodSandbox stops the pod's containers; RemovePodSandbox
			// removes them with it.
			if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pods[i]}); err != nil && errs[i] == nil {
				errs[i] = fmt.Errorf("StopPodSandbox: %w", err)
			}
			if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pods[i]}); err != nil && errs[i] == nil {
				errs[i] = fmt.Errorf("RemovePodSandbox: %w", err)
			}
		})
	}
	wg.Wait()
	down = time.Since(start)
	return up, down, errors.Join(errs...)
}

// cycle runs one pod with one container through its whole life
// (benchenv.Cycle), then times RunPodSandbox of a host-network pod.
func cycle(ctx context.Context, socket string, i int, times map[string][]time.Duration) error {
	if err := benchenv.Cycle(ctx, socket, fmt.Sprintf("bench-%d", i), false, times); err != nil {
		return err
	}
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	hostCfg := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: fmt.Sprintf("bench-host-%d", i), Namespace: "bench", Uid: fmt.Sprintf("bench-host-%d", i)},
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
		}},
	}
	start := time.Now()
	r, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: hostCfg})
	if err != nil {
		return fmt.Errorf("%s: %w", hostNetStep, err)
	}
	times[hostNetStep] = append(times[hostNetStep], time.Since(start))
	if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
		return err
	}
	_, err = rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: r.PodSandboxId})
	return err
}
