// Command nri measures what NRI costs a pod's life through CRI, berth
// against containerd 2.4.2 in the same run: first with NRI disabled (berth
// only) and enabled with no plugin connected, then with one plugin that
// subscribes to every event and changes nothing (test/e2e/nriplugin)
// connected to each runtime's NRI socket. Iterations alternate between the
// runtimes; the figure per call is the median.
//
//	go run ./bench/nri -berth bin/berth -testbin bin/testbin -plugin bin/nriplugin -iterations 30
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/berth-cri/berth/bench/benchenv"
)

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary")
	testbin := flag.String("testbin", "bin/testbin", "static testbin for the images")
	plugin := flag.String("plugin", "bin/nriplugin", "the no-op NRI plugin")
	cache := flag.String("cache", "/var/cache/berth-e2e", "e2e cache (busybox package, containerd 2.4.2)")
	runc := flag.String("runc", "/usr/local/libexec/berth/runc", "the runc containerd runs (berth's default handler runs this one on Debian 12)")
	iterations := flag.Int("iterations", 30, "pod lifecycles per runtime and setting")
	flag.Parse()
	if err := run(context.Background(), *berth, *testbin, *plugin, *cache, *runc, *iterations); err != nil {
		fmt.Fprintln(os.Stderr, "bench/nri:", err)
		os.Exit(1)
	}
}

// target is one runtime in one setting.
type target struct {
	name   string
	socket string
	times  map[string][]time.Duration
}

func run(ctx context.Context, berthBin, testbin, pluginBin, cache, runcPath string, iterations int) error {
	work, err := os.MkdirTemp("", "berth-bench-nri-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	off, err := benchenv.StartBerth(ctx, filepath.Join(work, "off"), berthBin, testbin, cache, "[nri]\nenable = false\n")
	if err != nil {
		return err
	}
	defer off.Close()
	on, err := benchenv.StartBerth(ctx, filepath.Join(work, "on"), berthBin, testbin, cache)
	if err != nil {
		return err
	}
	defer on.Close()
	containerdDir, err := benchenv.EnsureContainerd2(ctx, cache)
	if err != nil {
		return err
	}
	cd, err := benchenv.StartContainerd2(ctx, containerdDir, filepath.Join(work, "containerd"), on.Registry.HostsDir, on.CNIConfDir, runcPath)
	if err != nil {
		return err
	}
	defer cd.Stop()

	berthOff := &target{name: "berth, NRI off", socket: off.Berth.Socket}
	berthOn := &target{name: "berth, no plugin", socket: on.Berth.Socket}
	cdOn := &target{name: "containerd, no plugin", socket: cd.Socket}
	for _, t := range []*target{berthOff, berthOn, cdOn} {
		if err := benchenv.Pull(ctx, t.socket, benchenv.Busybox, "registry.k8s.io/pause:3.10"); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	if err := measure(ctx, "a", iterations, berthOff, berthOn, cdOn); err != nil {
		return err
	}
	for _, sock := range []string{on.Berth.NRISocket, cd.NRISocket} {
		stop, err := connectPlugin(ctx, pluginBin, sock)
		if err != nil {
			return err
		}
		defer stop()
	}
	berthPlugin := &target{name: "berth, 1 plugin", socket: on.Berth.Socket}
	cdPlugin := &target{name: "containerd, 1 plugin", socket: cd.Socket}
	if err := measure(ctx, "b", iterations, berthPlugin, cdPlugin); err != nil {
		return err
	}

	fmt.Printf("NRI's cost per CRI call, %d pod lifecycles per runtime and setting (median ms)\n", iterations)
	fmt.Printf("  %-17s %8s %8s %8s %8s | %8s %8s %8s | %s\n", "call", "berth", "NRI on", "+plugin", "added", "cd2", "+plugin", "added", "berth's added / cd2's")
	for _, step := range benchenv.LifecycleSteps {
		med := func(t *target) time.Duration { return benchenv.Percentile(t.times[step], 50) }
		bAdded, cAdded := med(berthPlugin)-med(berthOn), med(cdPlugin)-med(cdOn)
		ratio := "-"
		if cAdded > 0 {
			ratio = fmt.Sprintf("%.2f", float64(bAdded)/float64(cAdded))
		}
		fmt.Printf("  %-17s %8.2f %8.2f %8.2f %8.2f | %8.2f %8.2f %8.2f | %s\n", step,
			benchenv.Ms(med(berthOff)), benchenv.Ms(med(berthOn)), benchenv.Ms(med(berthPlugin)), benchenv.Ms(bAdded),
			benchenv.Ms(med(cdOn)), benchenv.Ms(med(cdPlugin)), benchenv.Ms(cAdded), ratio)
	}
	fmt.Println("  berth: NRI off / NRI on, no plugin / one no-op plugin on every event; cd2: containerd 2.4.2, NRI on")
	return nil
}

// measure runs iterations pod lifecycles on each target, alternating.
func measure(ctx context.Context, round string, iterations int, targets ...*target) error {
	for _, t := range targets {
		t.times = map[string][]time.Duration{}
	}
	for i := range iterations {
		for j := range targets {
			t := targets[(i+j)%len(targets)]
			if err := benchenv.Cycle(ctx, t.socket, fmt.Sprintf("nri-%s-%d", round, i), t.times); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	return nil
}

// connectPlugin starts the no-op plugin on socket and returns once the
// runtime has synchronized it (the plugin writes its ready file).
func connectPlugin(ctx context.Context, bin, socket string) (func(), error) {
	ready := filepath.Join(filepath.Dir(socket), "noop-plugin.ready")
	cmd := exec.CommandContext(ctx, bin, "-socket", socket, "-name", "noop", "-idx", "10", "-ready", ready)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() { _ = cmd.Process.Kill(); <-done }
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return stop, nil
		}
		select {
		case err := <-done:
			return nil, fmt.Errorf("nri plugin on %s exited: %v", socket, err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("nri plugin on %s not synchronized within 30s", socket)
		}
	}
}
