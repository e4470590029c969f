// Command density puts -pods pods, each with one running container, on one
// node in kubelet's shape (a PID namespace per container, the pod's network
// and IPC, a cgroup parent per pod, the bridge CNI), -batch at a time, on
// berth and then on containerd (Debian's 1.6) — one runtime at a time, so
// that each one's memory is its own — and reports: the wall time to all
// running; RunPodSandbox and StartContainer p50/p99 for the first and the
// last batch; the memory the pods added to the host (MemAvailable) and the
// PSS of the runtime's own processes (daemon, monitors or shims, pause);
// the daemon's RSS; ListContainers, ListPodSandbox and ContainerStatus
// latency with every pod up; how long the daemon takes after a restart
// (SIGTERM, start) to list every pod again; and the wall time to remove
// them all. It writes a PNG of each pod's start latency against the number
// of pods already running, for both runtimes.
//
//	go run ./bench/density -berth bin/berth -testbin bin/testbin -pods 500 -batch 50 -png density.png
package main

import (
	"context"
	"flag"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/bench/benchenv"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary")
	testbin := flag.String("testbin", "bin/testbin", "static testbin for the images")
	containerd := flag.String("containerd", "/usr/bin/containerd", "containerd binary")
	cache := flag.String("cache", "/var/cache/berth-e2e", "e2e cache (busybox package)")
	pods := flag.Int("pods", 500, "pods per runtime")
	batch := flag.Int("batch", 50, "pods started at once")
	png := flag.String("png", "density.png", "where the latency plot goes")
	cni := flag.String("cni", "", "a CNI conflist for both runtimes instead of the e2e tests' (bridge with ipMasq, portmap, loopback)")
	flag.Parse()
	benchenv.SurviveClosedOutput()
	if err := run(context.Background(), *berth, *testbin, *containerd, *cache, *cni, *pods, *batch, *png); err != nil {
		fmt.Fprintln(os.Stderr, "bench/density:", err)
		os.Exit(1)
	}
}

// result is one runtime's figures.
type result struct {
	name                    string
	wall, recovery, removal time.Duration
	run, start, total       []time.Duration // per pod, in start order
	memAdded, pss           int             // kB
	list, listPods, status  []time.Duration
	// meminfo is what the pods added to each /proc/meminfo field (kB):
	// where the memory went (process pages, slab, page tables, ...).
	meminfo map[string]int
	// phases is berth's own start phases, mean per pod, for each batch
	// (from its Prometheus histograms); nil for containerd.
	phases []map[string]time.Duration
	// daemonRSS is the daemon's RSS (kB) after each batch.
	daemonRSS []int
	// soloEmpty and soloFull are pods started one at a time, alone, on
	// the empty node and with every pod up.
	soloEmpty, soloFull []time.Duration
}

// runtimeUnderTest is how the benchmark reaches and restarts a runtime,
// and finds its processes.
type runtimeUnderTest struct {
	name    string
	socket  string
	metrics string // berth's /metrics URL; "" for none
	pid     func() int
	owns    func(pid int, cmdline string) bool // the runtime's processes besides the daemon
	stop    func() error                       // SIGTERM, and wait for the exit
	start   func() error                       // start again on the same state
}

func run(ctx context.Context, berthBin, testbin, containerdBin, cache, cni string, pods, batch int, png string) error {
	work, err := os.MkdirTemp("", "berth-bench-density-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	opts := e2eenv.DaemonOptions{ExtraConfig: "[metrics]\naddress = \"127.0.0.1:0\""}
	if cni != "" {
		opts.CNIConfDir = filepath.Join(work, "net.d")
		if err := copyConflist(cni, opts.CNIConfDir); err != nil {
			return err
		}
	}
	env, err := benchenv.StartBerthWith(ctx, filepath.Join(work, "berth"), berthBin, testbin, cache, opts)
	if err != nil {
		return err
	}
	defer env.Close()
	d := env.Berth
	metricsURL, ok := d.ServedURL("metrics")
	if !ok {
		return fmt.Errorf("berth did not log where it serves metrics")
	}
	berth := &runtimeUnderTest{
		name: "berth", socket: d.Socket, pid: d.Pid, metrics: metricsURL,
		owns: func(_ int, cmdline string) bool {
			return strings.Contains(cmdline, "berth-monitor") && strings.Contains(cmdline, d.State) || strings.HasSuffix(cmdline, "berth-pause ")
		},
		stop:  d.Stop,
		start: func() error { return d.Restart(ctx) },
	}
	var results []*result
	r, err := measure(ctx, berth, pods, batch)
	if err != nil {
		return fmt.Errorf("berth: %w", err)
	}
	results = append(results, r)
	d.Stop()

	cdDir := filepath.Join(work, "containerd")
	cd, err := benchenv.StartContainerd(ctx, containerdBin, cdDir, env.Registry.HostsDir, env.CNIConfDir)
	if err != nil {
		return err
	}
	containerd := &runtimeUnderTest{
		name: "containerd", socket: cd.Socket, pid: func() int { return cd.Pid() },
		owns: func(_ int, cmdline string) bool {
			return strings.Contains(cmdline, "containerd-shim") && strings.Contains(cmdline, cd.Socket) || cmdline == "/pause "
		},
		stop: func() error { cd.Stop(); return nil },
		start: func() error {
			c, err := benchenv.StartContainerd(ctx, containerdBin, cdDir, env.Registry.HostsDir, env.CNIConfDir)
			if err == nil {
				cd = c
			}
			return err
		},
	}
	r, err = measure(ctx, containerd, pods, batch)
	cd.Stop()
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	results = append(results, r)
	report(results, pods, batch)
	if err := plotLatency(results, batch, png); err != nil {
		return err
	}
	fmt.Printf("plot: %s\n", png)
	return nil
}

// copyConflist puts the conflist at path into a new CNI config directory.
func copyConflist(path, dir string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "10-"+filepath.Base(path)), b, 0o644)
}

// measure runs the whole experiment on one runtime.
func measure(ctx context.Context, rt *runtimeUnderTest, pods, batch int) (*result, error) {
	if err := benchenv.Pull(ctx, rt.socket, benchenv.Busybox, "registry.k8s.io/pause:3.6"); err != nil {
		return nil, err
	}
	conn, err := e2eenv.Dial(rt.socket)
	if err != nil {
		return nil, err
	}
	defer func() { conn.Close() }()
	client := runtime.NewRuntimeServiceClient(conn)
	res := &result{name: rt.name, run: make([]time.Duration, pods), start: make([]time.Duration, pods), total: make([]time.Duration, pods)}
	before, err := meminfo()
	if err != nil {
		return nil, err
	}
	phasesBefore, err := scrapePhases(ctx, rt.metrics)
	if err != nil {
		return nil, err
	}
	const solos = 5
	if res.soloEmpty, err = soloStarts(ctx, client, pods, solos); err != nil {
		return nil, err
	}
	ids := make([]string, pods)
	ctrs := make([]string, pods)
	errs := make([]error, pods)
	begin := time.Now()
	for first := 0; first < pods; first += batch {
		var wg sync.WaitGroup
		for i := first; i < min(first+batch, pods); i++ {
			wg.Go(func() { ids[i], ctrs[i], errs[i] = startPod(ctx, client, i, res) })
		}
		wg.Wait()
		for _, err := range errs[first:min(first+batch, pods)] {
			if err != nil {
				return nil, err
			}
		}
		m, err := benchenv.SmapsRollup(rt.pid())
		if err != nil {
			return nil, err
		}
		res.daemonRSS = append(res.daemonRSS, m["Rss"])
		if rt.metrics != "" {
			now, err := scrapePhases(ctx, rt.metrics)
			if err != nil {
				return nil, err
			}
			res.phases = append(res.phases, now.meanSince(phasesBefore))
			phasesBefore = now
		}
	}
	res.wall = time.Since(begin)
	if res.soloFull, err = soloStarts(ctx, client, pods+solos, solos); err != nil {
		return nil, err
	}
	after, err := meminfo()
	if err != nil {
		return nil, err
	}
	res.memAdded = before["MemAvailable"] - after["MemAvailable"]
	res.meminfo = make(map[string]int)
	for k, v := range after {
		res.meminfo[k] = v - before[k]
	}
	if res.pss, err = runtimeMemory(rt); err != nil {
		return nil, err
	}
	for i := range 100 {
		for _, s := range []struct {
			into *[]time.Duration
			call func() error
		}{
			{&res.list, func() error { _, err := client.ListContainers(ctx, &runtime.ListContainersRequest{}); return err }},
			{&res.listPods, func() error { _, err := client.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); return err }},
			{&res.status, func() error {
				_, err := client.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctrs[(i*7)%pods]})
				return err
			}},
		} {
			t := time.Now()
			if err := s.call(); err != nil {
				return nil, err
			}
			*s.into = append(*s.into, time.Since(t))
		}
	}
	conn.Close()
	if res.recovery, err = recoveryTime(ctx, rt, pods); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	if conn, err = e2eenv.Dial(rt.socket); err != nil {
		return nil, err
	}
	client = runtime.NewRuntimeServiceClient(conn)
	begin = time.Now()
	for first := 0; first < pods; first += batch {
		var wg sync.WaitGroup
		for i := first; i < min(first+batch, pods); i++ {
			wg.Go(func() {
				if _, err := client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: ids[i]}); err != nil {
					errs[i] = err
					return
				}
				_, errs[i] = client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: ids[i]})
			})
		}
		wg.Wait()
	}
	res.removal = time.Since(begin)
	for i := range pods {
		removeCgroup(podCgroup(i))
		if errs[i] != nil {
			return nil, errs[i]
		}
	}
	return res, nil
}

func podCgroup(i int) string { return fmt.Sprintf("/density-bench/pod%d", i) }

// startPod runs pod i in kubelet's shape with one running container and
// records its latencies in res.
func startPod(ctx context.Context, client runtime.RuntimeServiceClient, i int, res *result) (podID, ctrID string, err error) {
	var l podLatency
	podID, ctrID, l, err = startTimedPod(ctx, client, i)
	res.run[i], res.start[i], res.total[i] = l.run, l.start, l.total
	return podID, ctrID, err
}

// podLatency is how long a pod took to start: RunPodSandbox,
// StartContainer, and the whole (run + create + start).
type podLatency struct{ run, start, total time.Duration }

// soloStarts starts n pods one at a time, from index first, each removed
// before the next: the start latency at the node's current count with
// nothing else starting beside it.
func soloStarts(ctx context.Context, client runtime.RuntimeServiceClient, first, n int) ([]time.Duration, error) {
	var totals []time.Duration
	for i := first; i < first+n; i++ {
		podID, _, l, err := startTimedPod(ctx, client, i)
		if podID != "" {
			if _, stopErr := client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); stopErr != nil && err == nil {
				err = stopErr
			}
			if _, rmErr := client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); rmErr != nil && err == nil {
				err = rmErr
			}
		}
		removeCgroup(podCgroup(i))
		if err != nil {
			return nil, err
		}
		totals = append(totals, l.total)
	}
	return totals, nil
}

// startTimedPod runs pod i in kubelet's shape with one running container.
func startTimedPod(ctx context.Context, client runtime.RuntimeServiceClient, i int) (podID, ctrID string, l podLatency, err error) {
	name := fmt.Sprintf("density-%d", i)
	cfg := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: name},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: podCgroup(i),
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
				Network: runtime.NamespaceMode_POD, Ipc: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER,
			}},
		},
	}
	t := time.Now()
	pod, err := client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", "", l, fmt.Errorf("RunPodSandbox %d: %w", i, err)
	}
	l.run = time.Since(t)
	ctr, err := client.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "c"},
			Image:    &runtime.ImageSpec{Image: benchenv.Busybox},
			Command:  []string{"sleep", "100000"},
			Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
				NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_POD, Ipc: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER},
			}},
		}})
	if err != nil {
		return pod.PodSandboxId, "", l, fmt.Errorf("CreateContainer %d: %w", i, err)
	}
	s := time.Now()
	if _, err := client.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		return pod.PodSandboxId, ctr.ContainerId, l, fmt.Errorf("StartContainer %d: %w", i, err)
	}
	l.start = time.Since(s)
	l.total = time.Since(t)
	return pod.PodSandboxId, ctr.ContainerId, l, nil
}

// recoveryTime stops the runtime (SIGTERM) and times it from its start
// again until it lists every pod.
func recoveryTime(ctx context.Context, rt *runtimeUnderTest, pods int) (time.Duration, error) {
	if err := rt.stop(); err != nil {
		return 0, err
	}
	begin := time.Now()
	if err := rt.start(); err != nil {
		return 0, err
	}
	for {
		if conn, err := e2eenv.Dial(rt.socket); err == nil {
			resp, err := runtime.NewRuntimeServiceClient(conn).ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
			conn.Close()
			if err == nil && len(resp.Items) >= pods {
				return time.Since(begin), nil
			}
		}
		if time.Since(begin) > 2*time.Minute {
			return 0, fmt.Errorf("%s did not list %d pods within 2 minutes of a restart", rt.name, pods)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// meminfo is /proc/meminfo's fields, kB.
func meminfo() (map[string]int, error) {
	m, err := benchenv.KBFields("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	if _, ok := m["MemAvailable"]; !ok {
		return nil, fmt.Errorf("no MemAvailable in /proc/meminfo")
	}
	return m, nil
}

// runtimeMemory sums the PSS (kB) of the runtime's processes: its daemon
// and what it owns (monitors and their inits, or shims and pause
// containers).
func runtimeMemory(rt *runtimeUnderTest) (pss int, err error) {
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		b, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if pid != rt.pid() && !rt.owns(pid, cmdline) {
			continue
		}
		m, err := benchenv.SmapsRollup(pid)
		if err != nil {
			continue // gone meanwhile
		}
		pss += m["Pss"]
	}
	return pss, nil
}

// removeCgroup removes a pod's cgroup parent (and the bench's) from every
// hierarchy; the runtimes leave the parent, as kubelet owns it.
func removeCgroup(path string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + path)
	dirs = append(dirs, "/sys/fs/cgroup"+path)
	for _, d := range dirs {
		_ = os.Remove(d)
		_ = os.Remove(filepath.Dir(d))
	}
}

func report(results []*result, pods, batch int) {
	b, c := results[0], results[1]
	ms := benchenv.Ms
	p := benchenv.Percentile
	fmt.Printf("%d pods × 1 running container, %d at a time (kubelet's shape, bridge CNI)\n", pods, batch)
	fmt.Printf("  %-44s %12s %12s %7s\n", "", "berth", "containerd", "ratio")
	row := func(what string, bv, cv float64, unit string) {
		fmt.Printf("  %-44s %9.2f %-2s %9.2f %-2s %7.2f\n", what, bv, unit, cv, unit, bv/cv)
	}
	row("wall time to all running", b.wall.Seconds(), c.wall.Seconds(), "s")
	last := pods - batch
	for _, s := range []struct {
		what string
		b, c []time.Duration
	}{{"RunPodSandbox", b.run, c.run}, {"StartContainer", b.start, c.start}} {
		row(s.what+" p50, first batch", ms(p(s.b[:batch], 50)), ms(p(s.c[:batch], 50)), "ms")
		row(s.what+" p50, last batch", ms(p(s.b[last:], 50)), ms(p(s.c[last:], 50)), "ms")
		row(s.what+" p99, first batch", ms(p(s.b[:batch], 99)), ms(p(s.c[:batch], 99)), "ms")
		row(s.what+" p99, last batch", ms(p(s.b[last:], 99)), ms(p(s.c[last:], 99)), "ms")
	}
	row("memory added per pod (MemAvailable)", float64(b.memAdded)/float64(pods)/1024, float64(c.memAdded)/float64(pods)/1024, "MB")
	row("runtime's processes, PSS per pod", float64(b.pss)/float64(pods)/1024, float64(c.pss)/float64(pods)/1024, "MB")
	for _, n := range slices.Compact([]int{100, pods}) {
		if i := n/batch - 1; n <= pods && i >= 0 && i < len(b.daemonRSS) && i < len(c.daemonRSS) {
			row(fmt.Sprintf("daemon RSS at %d pods", n), float64(b.daemonRSS[i])/1024, float64(c.daemonRSS[i])/1024, "MB")
		}
	}
	row("ListContainers p50", ms(p(b.list, 50)), ms(p(c.list, 50)), "ms")
	row("ListPodSandbox p50", ms(p(b.listPods, 50)), ms(p(c.listPods, 50)), "ms")
	row("ContainerStatus p50", ms(p(b.status, 50)), ms(p(c.status, 50)), "ms")
	row("restart until every pod is listed", b.recovery.Seconds(), c.recovery.Seconds(), "s")
	row("wall time to remove all", b.removal.Seconds(), c.removal.Seconds(), "s")
	fmt.Println("  goals (#15): memory added per pod ≤ 0.25× containerd's; last batch's p50 within 20 % of the first's;")
	fmt.Println("  restart ≤ 1 s; lists and status ≤ 5 ms p50")
	startDrift := float64(p(b.total[last:], 50)) / float64(p(b.total[:batch], 50))
	fmt.Printf("  berth: pod start (run+create+start) p50, last batch / first batch: %.2f\n", startDrift)
	row("a pod started alone, empty node, p50", ms(p(b.soloEmpty, 50)), ms(p(c.soloEmpty, 50)), "ms")
	row(fmt.Sprintf("a pod started alone beside %d, p50", pods), ms(p(b.soloFull, 50)), ms(p(c.soloFull, 50)), "ms")
	reportProfile(b, c, pods)
}

// reportProfile says where the time and the memory went: berth's start
// phases in the first and the last batch, and what the pods added to each
// kind of host memory on both runtimes.
func reportProfile(b, c *result, pods int) {
	if len(b.phases) > 1 {
		first, last := b.phases[0], b.phases[len(b.phases)-1]
		fmt.Println("  berth's start phases, mean ms per pod (first batch → last batch):")
		names := make([]string, 0, len(last))
		for name := range last {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			fmt.Printf("    %-16s %7.2f → %7.2f  (%.2f×)\n", name, benchenv.Ms(first[name]), benchenv.Ms(last[name]),
				float64(last[name])/float64(max(first[name], 1)))
		}
	}
	fmt.Println("  host memory added per pod by kind (/proc/meminfo, MB; + is used):")
	fmt.Printf("    %-16s %9s %11s\n", "", "berth", "containerd")
	for _, field := range []string{"AnonPages", "Shmem", "Mapped", "Cached", "SUnreclaim", "SReclaimable", "KernelStack", "PageTables", "Percpu", "MemFree", "MemAvailable"} {
		sign := 1.0
		if field == "MemFree" || field == "MemAvailable" {
			sign = -1 // a fall is memory used
		}
		fmt.Printf("    %-16s %9.3f %11.3f\n", field, sign*float64(b.meminfo[field])/float64(pods)/1024, sign*float64(c.meminfo[field])/float64(pods)/1024)
	}
}

// plotLatency draws each pod's start latency (run + create + start)
// against the pods already running, per runtime.
func plotLatency(results []*result, batch int, png string) error {
	pl := plot.New()
	pl.Title.Text = "pod start latency as the node fills"
	pl.X.Label.Text = "pods running"
	pl.Y.Label.Text = "RunPodSandbox + CreateContainer + StartContainer (ms)"
	colors := []color.RGBA{{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, {R: 0xd6, G: 0x27, B: 0x28, A: 0xff}}
	for i, r := range results {
		pts := make(plotter.XYs, len(r.total))
		for j, d := range r.total {
			pts[j] = plotter.XY{X: float64(j / batch * batch), Y: benchenv.Ms(d)}
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = colors[i%len(colors)]
		sc.GlyphStyle.Radius = vg.Points(1.5)
		// The median of each batch, as a line.
		var med plotter.XYs
		for first := 0; first < len(r.total); first += batch {
			b := r.total[first:min(first+batch, len(r.total))]
			med = append(med, plotter.XY{X: float64(first), Y: benchenv.Ms(benchenv.Percentile(slices.Clone(b), 50))})
		}
		line, err := plotter.NewLine(med)
		if err != nil {
			return err
		}
		line.Color = colors[i%len(colors)]
		line.Width = vg.Points(1.5)
		pl.Add(sc, line)
		pl.Legend.Add(r.name+" (dots: pods; line: batch median)", line)
	}
	pl.Legend.Top = true
	return pl.Save(8*vg.Inch, 5*vg.Inch, png)
}
