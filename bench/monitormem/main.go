// Command monitormem measures the memory of berth's processes per pod: it
// runs berth with the busybox test image, starts pods of two shapes — a PID
// namespace per container (kubelet's), and one shared by the pod, whose
// init is berth-pause — each with two running containers, and reads the
// /proc/PID/smaps_rollup of each pod's monitor and init. Private memory
// (Private_Clean + Private_Dirty) is what each extra pod costs; RSS
// includes pages shared with other pods' processes (the binaries' text).
//
//	go run ./bench/monitormem -berth bin/berth -testbin bin/testbin [-pods 1]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
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
	pods := flag.Int("pods", 1, "pods of each shape to run, each with two containers")
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
	idle, err := benchenv.SmapsRollup(d.Pid())
	if err != nil {
		return err
	}
	fmt.Printf("berth daemon after one pull, idle: RSS %.2f MB (anonymous %.2f MB, file %.2f MB), PSS %.2f MB\n",
		mb(idle["Rss"]), mb(idle["Anonymous"]), mb(idle["Rss"]-idle["Anonymous"]), mb(idle["Pss"]))
	type pod struct {
		id, shape string
	}
	var made []pod
	defer func() {
		for _, p := range made {
			rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.id})
		}
	}()
	// kubelet's shape (a PID namespace per container) and a shared one,
	// whose PID namespace has its own init (berth-pause).
	shapes := []struct {
		name string
		pid  runtime.NamespaceMode
	}{{"pid CONTAINER", runtime.NamespaceMode_CONTAINER}, {"pid POD", runtime.NamespaceMode_POD}}
	for i := range pods {
		for _, shape := range shapes {
			name := fmt.Sprintf("mem-%d-%d", i, shape.pid)
			cfg := &runtime.PodSandboxConfig{
				Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: name},
				Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Pid: shape.pid},
				}},
			}
			resp, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
			if err != nil {
				return err
			}
			made = append(made, pod{resp.PodSandboxId, shape.name})
			for _, c := range []string{"a", "b"} {
				ctr, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{
					PodSandboxId: resp.PodSandboxId, SandboxConfig: cfg,
					Config: &runtime.ContainerConfig{
						Metadata: &runtime.ContainerMetadata{Name: c},
						Image:    &runtime.ImageSpec{Image: busybox},
						Command:  []string{"sh", "-c", "while true; do echo " + c + "; sleep 1; done"},
						Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
							NamespaceOptions: &runtime.NamespaceOption{Pid: shape.pid},
						}},
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
	}
	fmt.Printf("berth's processes per pod, %d pod(s) of each shape with two running containers each (/proc/PID/smaps_rollup):\n", pods)
	for _, p := range made {
		st, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
		if err != nil {
			return err
		}
		var info struct {
			MonitorPid int `json:"monitorPid"`
			PausePid   int `json:"pausePid"`
		}
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
			return fmt.Errorf("verbose pod info: %w", err)
		}
		total := map[string]int{}
		var parts []string
		for _, proc := range []struct {
			name string
			pid  int
		}{{"monitor", info.MonitorPid}, {"pause", info.PausePid}} {
			if proc.pid <= 0 {
				continue
			}
			m, err := benchenv.SmapsRollup(proc.pid)
			if err != nil {
				return err
			}
			for k, v := range m {
				total[k] += v
			}
			parts = append(parts, fmt.Sprintf("%s RSS %.2f / private %.2f", proc.name, mb(m["Rss"]), mb(m["Private_Clean"]+m["Private_Dirty"])))
		}
		fmt.Printf("  pod %s (%s): RSS %.2f MB, private %.2f MB, PSS %.2f MB  [%s]\n",
			p.id[:12], p.shape, mb(total["Rss"]), mb(total["Private_Clean"]+total["Private_Dirty"]), mb(total["Pss"]), strings.Join(parts, "; "))
	}
	return nil
}

func mb(kb int) float64 { return float64(kb) / 1024 }
