// Command kubeletstart times what a kubelet user waits for: a static pod's
// manifest written until kubelet reports the pod Running, under the same
// kubelet (v1.37.2, standalone, built once into the e2e cache) on berth and
// on containerd 2.4.2 (built once too), in one run, warm (images present),
// one pod at a time: the median, minimum and maximum of -n pods each.
//
//	go run ./bench/kubeletstart -berth bin/berth -testbin bin/testbin -n 5
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/bench/benchenv"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

const (
	busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	pause   = "registry.k8s.io/pause:3.10"
)

// manifest is kubelet's shape of a small workload: two containers.
func manifest(name string) string {
	return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `, namespace: default}
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 0
  containers:
  - {name: a, image: ` + busybox + `, imagePullPolicy: IfNotPresent, command: [sleep, "100000"]}
  - {name: b, image: ` + busybox + `, imagePullPolicy: IfNotPresent, command: [sleep, "100000"]}
`
}

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary")
	testbin := flag.String("testbin", "bin/testbin", "static testbin for the images")
	cache := flag.String("cache", "/var/cache/berth-e2e", "e2e cache (busybox package, kubelet, containerd 2.x)")
	runc := flag.String("runc", "/usr/local/libexec/berth/runc", "the runc containerd runs (berth's default handler runs this one on Debian 12)")
	n := flag.Int("n", 5, "pods timed per runtime")
	flag.Parse()
	benchenv.SurviveClosedOutput()
	if err := run(context.Background(), *berth, *testbin, *cache, *runc, *n); err != nil {
		fmt.Fprintln(os.Stderr, "bench/kubeletstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, berthBin, testbin, cache, runcPath string, n int) error {
	kubeletBin, err := e2eenv.EnsureKubelet(ctx, cache)
	if err != nil {
		return err
	}
	containerdDir, err := benchenv.EnsureContainerd2(ctx, cache)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "berth-bench-kubelet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env, err := benchenv.StartBerth(ctx, work, berthBin, testbin, cache)
	if err != nil {
		return err
	}
	defer env.Close()
	berthTimes, err := measure(ctx, kubeletBin, env.Berth.Socket, filepath.Join(work, "kubelet-berth"), n)
	if err != nil {
		return fmt.Errorf("berth: %w", err)
	}
	env.Berth.Stop()

	cd, err := benchenv.StartContainerd2(ctx, containerdDir, filepath.Join(work, "containerd"), env.Registry.HostsDir, env.CNIConfDir, runcPath)
	if err != nil {
		return err
	}
	defer cd.Stop()
	cdTimes, err := measure(ctx, kubeletBin, cd.Socket, filepath.Join(work, "kubelet-containerd"), n)
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}

	fmt.Printf("static pod, 2 containers: manifest written → kubelet reports Running (kubelet %s, %d pods each, warm)\n", e2eenv.KubeletVersion, n)
	fmt.Printf("%-18s %10s %10s %10s\n", "runtime", "median", "min", "max")
	for _, r := range []struct {
		name  string
		times []time.Duration
	}{{"berth", berthTimes}, {"containerd " + benchenv.Containerd2Version, cdTimes}} {
		fmt.Printf("%-18s %10s %10s %10s\n", r.name, ms(median(r.times)), ms(slices.Min(r.times)), ms(slices.Max(r.times)))
	}
	fmt.Printf("berth / containerd (median): %.2f\n", float64(median(berthTimes))/float64(median(cdTimes)))
	return nil
}

// measure runs a kubelet on the runtime at socket, starts a warm-up pod and
// then n pods one at a time, each removed again before the next, and
// returns the manifest-to-Running times.
func measure(ctx context.Context, kubeletBin, socket, dir string, n int) (times []time.Duration, err error) {
	if err := prePull(ctx, socket); err != nil {
		return nil, err
	}
	k, err := e2eenv.StartKubelet(ctx, e2eenv.KubeletOptions{Binary: kubeletBin, Dir: dir, RuntimeSocket: socket, NodeName: "bench-node"})
	if err != nil {
		return nil, err
	}
	defer func() {
		k.Stop()
		if _, rmErr := e2eenv.RemoveAllPods(ctx, socket); rmErr != nil && err == nil {
			err = rmErr
		}
		if cErr := k.Cleanup(); cErr != nil && err == nil {
			err = cErr
		}
	}()
	for i := 0; i <= n; i++ {
		name := fmt.Sprintf("p%d", i)
		start := time.Now()
		if err := k.WriteManifest(name, manifest(name)); err != nil {
			return nil, err
		}
		err := k.WaitFor(ctx, time.Minute, func() (bool, string) {
			p, s := k.Pod(name)
			return p.Status.Phase == "Running", s
		})
		if err != nil {
			return nil, fmt.Errorf("%s Running: %w (kubelet log %s)", name, err, k.LogPath)
		}
		if i > 0 { // p0 warms kubelet and the runtime up
			times = append(times, time.Since(start))
		}
		if err := k.RemoveManifest(name); err != nil {
			return nil, err
		}
		err = k.WaitFor(ctx, time.Minute, func() (bool, string) {
			pods, err := k.Pods()
			if err != nil {
				return false, err.Error()
			}
			_, there := pods[name+"-bench-node"]
			return !there, "still there"
		})
		if err != nil {
			return nil, fmt.Errorf("%s gone: %w", name, err)
		}
	}
	return times, nil
}

func prePull(ctx context.Context, socket string) error {
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	images := runtime.NewImageServiceClient(conn)
	for _, ref := range []string{busybox, pause} {
		if _, err := images.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
