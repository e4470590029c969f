// Command nri measures what NRI costs a pod's life through CRI, berth
// against containerd 2.4.2 in the same run: berth with NRI disabled, and
// each runtime with NRI enabled and no plugin connected and with one plugin
// that subscribes to every event and changes nothing (test/e2e/nriplugin)
// — five daemons side by side, iterations interleaved between them; the
// figure per call is the interquartile mean. Pods use the host's network: CNI's
// variance would hide what NRI costs.
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
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary")
	testbin := flag.String("testbin", "bin/testbin", "static testbin for the images")
	plugin := flag.String("plugin", "bin/nriplugin", "the no-op NRI plugin")
	cache := flag.String("cache", "/var/cache/berth-e2e", "e2e cache (busybox package, containerd 2.4.2)")
	runc := flag.String("runc", "/usr/local/libexec/berth/runc", "the runc containerd runs (berth's default handler runs this one on Debian 12)")
	iterations := flag.Int("iterations", 30, "pod lifecycles per runtime and setting")
	flag.Parse()
	benchenv.SurviveClosedOutput()
	if err := run(context.Background(), *berth, *testbin, *plugin, *cache, *runc, *iterations); err != nil {
		fmt.Fprintln(os.Stderr, "bench/nri:", err)
		os.Exit(1)
	}
}

// target is one runtime in one setting.
type target struct {
	name, socket, nriSocket string
	plugged                 bool   // a plugin is connected
	hosts, cniConfDir       string // berth's, which containerd shares
	times                   map[string][]time.Duration
}

func run(ctx context.Context, berthBin, testbin, pluginBin, cache, runcPath string, iterations int) error {
	work, err := os.MkdirTemp("", "berth-bench-nri-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	containerdDir, err := benchenv.EnsureContainerd2(ctx, cache)
	if err != nil {
		return err
	}
	// Five daemons side by side, iterations interleaved, so that the
	// machine's drift reaches every setting alike.
	var targets []*target
	for _, s := range []struct {
		name    string
		nri     string
		plugged bool
	}{{"berth, NRI off", "enable = false", false}, {"berth, no plugin", "", false}, {"berth, 1 plugin", "", true}} {
		env, err := benchenv.StartBerthWith(ctx, filepath.Join(work, fmt.Sprint(len(targets))), berthBin, testbin, cache, e2eenv.DaemonOptions{NRIConfig: s.nri})
		if err != nil {
			return err
		}
		defer env.Close()
		targets = append(targets, &target{name: s.name, socket: env.Berth.Socket, nriSocket: env.Berth.NRISocket, plugged: s.plugged,
			hosts: env.Registry.HostsDir, cniConfDir: env.CNIConfDir})
	}
	for _, plugged := range []bool{false, true} {
		cd, err := benchenv.StartContainerd2(ctx, containerdDir, filepath.Join(work, fmt.Sprint(len(targets))), targets[0].hosts, targets[0].cniConfDir, runcPath)
		if err != nil {
			return err
		}
		defer cd.Stop()
		name := "containerd, no plugin"
		if plugged {
			name = "containerd, 1 plugin"
		}
		targets = append(targets, &target{name: name, socket: cd.Socket, nriSocket: cd.NRISocket, plugged: plugged})
	}
	for _, t := range targets {
		if err := benchenv.Pull(ctx, t.socket, benchenv.Busybox, "registry.k8s.io/pause:3.10"); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		if t.plugged {
			stop, err := connectPlugin(ctx, pluginBin, t.nriSocket)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			defer stop()
		}
	}
	if err := measure(ctx, iterations, targets...); err != nil {
		return err
	}

	berthOff, berthOn, berthPlugin, cdOn, cdPlugin := targets[0], targets[1], targets[2], targets[3], targets[4]
	fmt.Printf("NRI's cost per CRI call, %d host-network pod lifecycles per runtime and setting, interleaved (interquartile mean, ms)\n", iterations)
	fmt.Printf("  %-17s %8s %8s %8s %8s | %8s %8s %8s | %s\n", "call", "berth", "NRI on", "+plugin", "added", "cd2", "+plugin", "added", "berth's added / cd2's")
	var bSum, cSum time.Duration // what the plugin adds over the whole lifecycle
	for _, step := range benchenv.LifecycleSteps {
		med := func(t *target) time.Duration { return benchenv.TrimmedMean(t.times[step]) }
		bAdded, cAdded := med(berthPlugin)-med(berthOn), med(cdPlugin)-med(cdOn)
		bSum, cSum = bSum+bAdded, cSum+cAdded
		ratio := "-"
		if cAdded > 0 {
			ratio = fmt.Sprintf("%.2f", float64(bAdded)/float64(cAdded))
		}
		fmt.Printf("  %-17s %8.2f %8.2f %8.2f %8.2f | %8.2f %8.2f %8.2f | %s\n", step,
			benchenv.Ms(med(berthOff)), benchenv.Ms(med(berthOn)), benchenv.Ms(med(berthPlugin)), benchenv.Ms(bAdded),
			benchenv.Ms(med(cdOn)), benchenv.Ms(med(cdPlugin)), benchenv.Ms(cAdded), ratio)
	}
	fmt.Printf("  %-17s %35.2f | %26.2f | %.2f\n", "whole lifecycle", benchenv.Ms(bSum), benchenv.Ms(cSum), float64(bSum)/float64(cSum))
	fmt.Println("  berth: NRI off / NRI on, no plugin / one no-op plugin on every event; cd2: containerd 2.4.2, NRI on")
	return nil
}

// measure runs iterations pod lifecycles on each target, alternating.
func measure(ctx context.Context, iterations int, targets ...*target) error {
	for _, t := range targets {
		t.times = map[string][]time.Duration{}
	}
	for i := range iterations {
		for j := range targets {
			t := targets[(i+j)%len(targets)]
			if err := benchenv.Cycle(ctx, t.socket, fmt.Sprintf("nri-%d", i), true, t.times); err != nil {
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
