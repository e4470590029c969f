// Command monitormem measures the memory of a pod's monitor: it runs berth
// with the busybox test image, starts a pod with two running containers, and
// reads the monitor's /proc/PID/smaps_rollup. Private memory (Private_Clean
// + Private_Dirty) is what each extra pod costs; RSS includes pages shared
// with other monitors (the binary's text).
//
//	go run ./bench/monitormem -berth bin/berth -testbin bin/testbin [-pods 1]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/bench/benchenv"
	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

const busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

func main() {
	berth := flag.String("berth", "bin/berth", "berth binary (berth-monitor next to it)")
	testbin := flag.String("testbin", "bin/testbin", "static testbin for the images")
	cache := flag.String("cache", "/var/cache/berth-e2e", "e2e cache (busybox package)")
	pods := flag.Int("pods", 1, "pods to run, each with two containers")
	flag.Parse()
	if err := run(*berth, *testbin, *cache, *pods); err != nil {
		fmt.Fprintln(os.Stderr, "bench/monitormem:", err)
		os.Exit(1)
	}
}

func run(berth, testbin, cache string, pods int) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "berth-bench-mem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env, err := benchenv.StartBerth(ctx, work, berth, testbin, cache)
	if err != nil {
		return err
	}
	defer env.Close()
	d := env.Berth
	conn, err := e2eenv.Dial(d.Socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt, is := runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
	if _, err := is.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		return err
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id})
		}
	}()
	for i := range pods {
		cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{
			Name: fmt.Sprintf("mem-%d", i), Namespace: "bench", Uid: fmt.Sprintf("mem-%d", i)}}
		pod, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			return err
		}
		ids = append(ids, pod.PodSandboxId)
		for _, c := range []string{"a", "b"} {
			ctr, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{
				PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
				Config: &runtime.ContainerConfig{
					Metadata: &runtime.ContainerMetadata{Name: c},
					Image:    &runtime.ImageSpec{Image: busybox},
					Command:  []string{"sh", "-c", "while true; do echo " + c + "; sleep 1; done"},
				},
			})
			if err != nil {
				return err
			}
			if _, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
				return err
			}
		}
	}
	fmt.Printf("berth-monitor memory, %d pod(s) with two running containers each (/proc/PID/smaps_rollup):\n", pods)
	for _, id := range ids {
		st, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
		if err != nil {
			return err
		}
		info := st.Info["info"]
		i := strings.Index(info, `"pid":`)
		rest := info[i+len(`"pid":`):]
		pid, err := strconv.Atoi(rest[:strings.IndexAny(rest, ",}")])
		if err != nil {
			return fmt.Errorf("monitor pid: %w", err)
		}
		m, err := smapsRollup(pid)
		if err != nil {
			return err
		}
		fmt.Printf("  pod %s monitor pid %d: RSS %.2f MB, private %.2f MB (clean %.2f + dirty %.2f), PSS %.2f MB\n",
			id[:12], pid, mb(m["Rss"]), mb(m["Private_Clean"]+m["Private_Dirty"]), mb(m["Private_Clean"]), mb(m["Private_Dirty"]), mb(m["Pss"]))
	}
	return nil
}

func mb(kb int) float64 { return float64(kb) / 1024 }

// smapsRollup returns the kB fields of /proc/PID/smaps_rollup.
func smapsRollup(pid int) (map[string]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
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
