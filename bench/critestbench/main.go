// Command critestbench runs critest's benchmark suite (critest -benchmark)
// against berth and against containerd (Debian's 1.6 package) in one run,
// with the same test images behind the same hosts.toml mirror and the same
// CNI conflist, and prints each operation's median for both and the ratio.
//
//	go run ./bench/critestbench -berth bin/berth -testbin bin/testbin [-n 200 -images 100]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/bench/benchenv"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary")
	testbin := flag.String("testbin", "bin/testbin", "static testbin for the images")
	containerd := flag.String("containerd", "/usr/bin/containerd", "containerd binary")
	cache := flag.String("cache", "/var/cache/berth-e2e", "e2e cache (busybox package, critest)")
	// A p99 needs 100 samples or more to be other than the largest.
	n := flag.Int("n", 200, "pods / containers per benchmark (serial)")
	images := flag.Int("images", 100, "image pull / status / remove lifecycles (serial)")
	flag.Parse()
	benchenv.SurviveClosedOutput()
	if err := run(*berth, *testbin, *containerd, *cache, *n, *images); err != nil {
		fmt.Fprintln(os.Stderr, "bench/critestbench:", err)
		os.Exit(1)
	}
}

func run(berthBin, testbin, containerdBin, cache string, n, images int) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "berth-critestbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	critest, err := e2eenv.EnsureCritest(ctx, cache)
	if err != nil {
		return err
	}
	env, err := benchenv.StartBerth(ctx, work, berthBin, testbin, cache, "[metrics]\naddress = \"127.0.0.1:0\"")
	if err != nil {
		return err
	}
	defer env.Close()
	metricsURL, ok := env.Berth.ServedURL("metrics")
	if !ok {
		return fmt.Errorf("berth did not log where it serves metrics")
	}
	params := filepath.Join(work, "params.yaml")
	if err := os.WriteFile(params, []byte(fmt.Sprintf(
		"containersNumber: %d\ncontainersNumberParallel: 1\ncontainerBenchmarkTimeoutSeconds: 60\npodsNumber: %d\npodsNumberParallel: 1\npodBenchmarkTimeoutSeconds: 60\nimagesNumber: %d\nimagesNumberParallel: 1\nimageBenchmarkTimeoutSeconds: 60\npodContainerStartBenchmarkTimeoutSeconds: 60\n", n, n, images)), 0o644); err != nil {
		return err
	}

	// One runtime at a time: berth is stopped before containerd starts.
	// Each is first timed on a call that does nothing, while idle: the
	// round trip under every operation's figures.
	results, idle := map[string]map[string][]time.Duration{}, map[string][]time.Duration{}
	if idle["berth"], err = versionRoundTrips(ctx, env.Berth.Socket); err != nil {
		return fmt.Errorf("berth: %w", err)
	}
	results["berth"], err = bench(ctx, critest, env.Berth.Socket, params, filepath.Join(work, "out-berth"))
	if err != nil {
		env.Berth.Stop()
		return fmt.Errorf("berth: %w", err)
	}
	handled, err := benchenv.Scrape(ctx, metricsURL)
	env.Berth.Stop()
	if err != nil {
		return err
	}
	cd, err := benchenv.StartContainerd(ctx, containerdBin, filepath.Join(work, "containerd"), env.Registry.HostsDir, env.CNIConfDir)
	if err != nil {
		return err
	}
	if idle["containerd"], err = versionRoundTrips(ctx, cd.Socket); err != nil {
		cd.Stop()
		return fmt.Errorf("containerd: %w", err)
	}
	results["containerd"], err = bench(ctx, critest, cd.Socket, params, filepath.Join(work, "out-containerd"))
	cd.Stop()
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}

	var ops []string
	for op := range results["berth"] {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	fmt.Printf("Version on the idle daemon, %d calls (µs, p50 / p99): berth %.0f / %.0f, containerd %.0f / %.0f\n", roundTrips,
		us(benchenv.Percentile(idle["berth"], 50)), us(benchenv.Percentile(idle["berth"], 99)),
		us(benchenv.Percentile(idle["containerd"], 50)), us(benchenv.Percentile(idle["containerd"], 99)))
	fmt.Printf("critest -benchmark, %d pods / containers and %d image lifecycles per benchmark, serial (ms)\n", n, images)
	fmt.Printf("  %-42s %16s %16s %7s %9s  %s\n", "operation", "berth p50 / p99", "cd p50 / p99", "p50 ×", "slowest #", "tail goals: p99 ≤ 3× own p50, ≤ containerd's p99")
	for _, op := range ops {
		b, c := results["berth"][op], results["containerd"][op]
		bp50, bp99 := benchenv.Percentile(b, 50), benchenv.Percentile(b, 99)
		cp50, cp99 := benchenv.Percentile(c, 50), benchenv.Percentile(c, 99)
		ratio := 0.0
		if cp50 > 0 {
			ratio = float64(bp50) / float64(cp50)
		}
		goals := "ok"
		switch {
		case bp99 > 3*bp50 && bp99 > cp99:
			goals = "MISSED both"
		case bp99 > 3*bp50:
			goals = fmt.Sprintf("MISSED: p99 %.1f× p50", float64(bp99)/float64(bp50))
		case bp99 > cp99:
			goals = "MISSED: p99 above containerd's"
		}
		fmt.Printf("  %-42s %7.2f / %6.2f %7.2f / %6.2f %7.2f %4d %4d  %s\n", op, benchenv.Ms(bp50), benchenv.Ms(bp99), benchenv.Ms(cp50), benchenv.Ms(cp99), ratio,
			slowest(b), slowest(c), goals)
	}
	fmt.Println("  (p50 and p99 by nearest rank: below 100 samples the p99 is the largest. slowest #: which sample")
	fmt.Println("  was the slowest, berth's and containerd's, from 1: the first call of a kind runs cold code)")

	// Where berth's slow calls were slow: in its handler (the time its
	// interceptor measures, berth_cri_request_duration_seconds) or around it
	// (gRPC, the socket, scheduling of both processes).
	fmt.Println("berth's calls slower than 3× its p50, rounded down to a bucket bound of berth's histogram:")
	fmt.Printf("  %-42s %9s %10s %17s\n", "operation", "above", "as timed", "in berth's handler")
	for _, op := range ops {
		method, ok := criMethods[path.Base(op)]
		if !ok {
			continue
		}
		h := callHistogram(handled, method)
		bound, ok := bucketBelow(h, 3*benchenv.Percentile(results["berth"][op], 50))
		if !ok {
			continue
		}
		fmt.Printf("  %-42s %6.1f ms %10d %17d\n", op, benchenv.Ms(bound.d), countAbove(results["berth"][op], bound.d), h.GetSampleCount()-bound.cumulative)
	}
	fmt.Println("  (the handler's count covers every call of that method, critest's setup calls too)")
	return nil
}

// criMethods names the CRI method behind each of critest's timed operations.
var criMethods = map[string]string{
	"CreateContainer": "CreateContainer", "StartContainer": "StartContainer", "StopContainer": "StopContainer",
	"RemoveContainer": "RemoveContainer", "StatusContainer": "ContainerStatus",
	"CreatePod": "RunPodSandbox", "StopPod": "StopPodSandbox", "RemovePod": "RemovePodSandbox", "StatusPod": "PodSandboxStatus",
	"PullImage": "PullImage", "RemoveImage": "RemoveImage", "StatusImage": "ImageStatus", "ListImages": "ListImages",
}

// callHistogram is berth's handler-time histogram of one CRI method.
func callHistogram(families map[string]*dto.MetricFamily, method string) *dto.Histogram {
	for _, m := range families["berth_cri_request_duration_seconds"].GetMetric() {
		if benchenv.Label(m, "method") == method {
			return m.GetHistogram()
		}
	}
	return nil
}

// bucket is a histogram bucket's upper bound and the observations at or
// below it.
type bucket struct {
	d          time.Duration
	cumulative uint64
}

// bucketBelow is h's last bucket whose upper bound is at most d, or its
// first when d is below them all.
func bucketBelow(h *dto.Histogram, d time.Duration) (bucket, bool) {
	var found bucket
	for i, b := range h.GetBucket() {
		bound := time.Duration(b.GetUpperBound() * float64(time.Second))
		if i > 0 && bound > d {
			break
		}
		found = bucket{bound, b.GetCumulativeCount()}
	}
	return found, len(h.GetBucket()) > 0
}

// countAbove is how many of ds are longer than d.
func countAbove(ds []time.Duration, d time.Duration) int {
	n := 0
	for _, x := range ds {
		if x > d {
			n++
		}
	}
	return n
}

// slowest is the 1-based position of the largest of ds.
func slowest(ds []time.Duration) int {
	i := 0
	for j, d := range ds {
		if d > ds[i] {
			i = j
		}
	}
	return i + 1
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// roundTrips is how many Version calls versionRoundTrips times.
const roundTrips = 3000

// versionRoundTrips times roundTrips Version calls, one at a time, on one
// connection, as critest makes its calls.
func versionRoundTrips(ctx context.Context, socket string) ([]time.Duration, error) {
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := runtime.NewRuntimeServiceClient(conn)
	ds := make([]time.Duration, 0, roundTrips)
	for range roundTrips {
		start := time.Now()
		if _, err := client.Version(ctx, &runtime.VersionRequest{}); err != nil {
			return nil, fmt.Errorf("version: %w", err)
		}
		ds = append(ds, time.Since(start))
	}
	return ds, nil
}

// bench runs critest's benchmarks against socket and returns the samples
// of every operation, named "<benchmark file>/<operation>".
func bench(ctx context.Context, critest, socket, params, out string) (map[string][]time.Duration, error) {
	// critest's container benchmark pulls its image inside the first timed
	// CreateContainer when the runtime lacks it: pull first.
	if err := benchenv.Pull(ctx, socket, benchenv.Busybox); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, critest, "-benchmark",
		"-runtime-endpoint", "unix://"+socket, "-image-endpoint", "unix://"+socket,
		"-benchmarking-params-file", params, "-benchmarking-output-dir", out, "-ginkgo.no-color")
	// The client's own garbage collections would land in the samples it
	// times (they are single calls of a fraction of a millisecond): a run
	// allocates far less than this machine has.
	cmd.Env = append(os.Environ(), "GOGC=off")
	log, err := os.Create(filepath.Join(out, "critest.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr, cmd.Dir = log, log, out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("critest -benchmark: %v (log %s)", err, log.Name())
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	samples := map[string][]time.Duration{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var set struct {
			OperationsNames []string `json:"operationsNames"`
			Datapoints      []struct {
				OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
			} `json:"datapoints"`
		}
		if err := json.Unmarshal(b, &set); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for i, name := range set.OperationsNames {
			var ds []time.Duration
			for _, dp := range set.Datapoints {
				if i < len(dp.OperationsDurationsNs) {
					ds = append(ds, time.Duration(dp.OperationsDurationsNs[i]))
				}
			}
			if len(ds) > 0 {
				samples[filepath.Base(f[:len(f)-len(".json")])+"/"+name] = ds
			}
		}
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("critest wrote no benchmark data in %s", out)
	}
	return samples, nil
}
