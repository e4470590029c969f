// Command pull measures a cold pull + unpack of a multi-layer image from a
// registry on loopback, berth against containerd (Debian's 1.6 package, its
// CRI plugin) in the same run, through the same CRI call and the same
// hosts.toml mirror directory. Each iteration removes the image from both
// runtimes (their removal collects blobs and snapshots synchronously), so
// every pull starts cold. The order alternates to share out cache effects.
//
//	go run ./bench/pull -berth bin/berth -iterations 7
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/bench/benchenv"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary")
	containerd := flag.String("containerd", "/usr/bin/containerd", "containerd binary (Debian: apt-get install containerd)")
	iterations := flag.Int("iterations", 7, "cold pulls per runtime")
	layers := flag.Int("layers", 5, "layers in the image")
	layerMB := flag.Int("layer-mb", 20, "size of each layer's file, MB (random: incompressible)")
	flag.Parse()
	benchenv.SurviveClosedOutput()
	if err := run(*berth, *containerd, *iterations, *layers, *layerMB); err != nil {
		fmt.Fprintln(os.Stderr, "bench/pull:", err)
		os.Exit(1)
	}
}

func run(berthBin, containerdBin string, iterations, layers, layerMB int) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "berth-bench-pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	reg, err := e2eenv.StartRegistry()
	if err != nil {
		return err
	}
	defer reg.Close()
	img, err := buildImage(layers, layerMB)
	if err != nil {
		return err
	}
	dst, _ := name.ParseReference(reg.Host+"/bench/big:1", name.Insecure)
	if err := remote.Write(dst, img); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	var size int64
	ls, _ := img.Layers()
	for _, l := range ls {
		n, _ := l.Size()
		size += n
	}
	hosts := filepath.Join(work, "hosts")
	if err := e2eenv.WriteHostsDir(hosts, reg.Host, []string{"bench.test"}); err != nil {
		return err
	}
	const ref = "bench.test/bench/big:1"

	bd, err := e2eenv.StartDaemon(ctx, e2eenv.DaemonOptions{
		Binary: berthBin, Dir: filepath.Join(work, "berth"), RegistryConfigPath: hosts,
		CNIConfDir: filepath.Join(work, "net.d"), CNIBinDirs: []string{"/usr/lib/cni"}, LogLevel: "info",
	})
	if err != nil {
		return err
	}
	defer bd.Stop()
	cd, err := benchenv.StartContainerd(ctx, containerdBin, filepath.Join(work, "containerd"), hosts, "")
	if err != nil {
		return err
	}
	defer cd.Stop()

	targets := []struct {
		name   string
		socket string
		times  []time.Duration
	}{{name: "berth", socket: bd.Socket}, {name: "containerd", socket: cd.Socket}}
	for i := range iterations {
		for j := range targets {
			t := &targets[(i+j)%len(targets)]
			d, err := coldPull(ctx, t.socket, ref)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			t.times = append(t.times, d)
		}
	}
	fmt.Printf("cold pull + unpack of %s: %d layers, %.1f MB compressed, %d iterations each\n",
		ref, layers, float64(size)/1e6, iterations)
	medians := map[string]time.Duration{}
	for _, t := range targets {
		slices.Sort(t.times)
		medians[t.name] = t.times[len(t.times)/2]
		fmt.Printf("  %-10s median %6.0f ms   min %6.0f ms   max %6.0f ms\n", t.name,
			benchenv.Ms(medians[t.name]), benchenv.Ms(t.times[0]), benchenv.Ms(t.times[len(t.times)-1]))
	}
	fmt.Printf("  ratio berth/containerd (median): %.2f\n", float64(medians["berth"])/float64(medians["containerd"]))
	return nil
}

// buildImage makes an image of random (incompressible) layers.
func buildImage(layers, layerMB int) (v1.Image, error) {
	img, err := random.Image(int64(layerMB)<<20, int64(layers))
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}

// coldPull pulls ref through CRI, timing the call, then removes it again.
func coldPull(ctx context.Context, socket, ref string) (time.Duration, error) {
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	c := runtime.NewImageServiceClient(conn)
	spec := &runtime.ImageSpec{Image: ref}
	if _, err := c.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec}); err != nil {
		return 0, fmt.Errorf("remove before pull: %w", err)
	}
	start := time.Now()
	if _, err := c.PullImage(ctx, &runtime.PullImageRequest{Image: spec}); err != nil {
		return 0, fmt.Errorf("pull: %w", err)
	}
	d := time.Since(start)
	if _, err := c.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec}); err != nil {
		return 0, fmt.Errorf("remove after pull: %w", err)
	}
	return d, nil
}
