// Command monitormem measures the memory of berth's processes per pod: it
// runs berth with the busybox test image, starts pods of two shapes — a PID
// namespace per container (kubelet's), and one shared by the pod, whose
// init is berth-pause — each with two running containers, and reads the
// /proc/PID/smaps_rollup of each pod's monitor and init. Private memory
// (Private_Clean + Private_Dirty) is what each extra pod costs; RSS
// includes pages shared with other pods' processes (the binaries' text).
// First it reads the daemon's own footprint after one pull, at once and
// once it has been idle for -settle, and containerd's the same way.
//
//	go run ./bench/monitormem -berth bin/berth -testbin bin/testbin [-pods 1]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	containerd := flag.String("containerd", "/usr/bin/containerd", `containerd binary whose idle footprint berth's is compared with ("" for none)`)
	settle := flag.Duration("settle", 10*time.Second, "how long a daemon is left idle after the pull before its footprint is read again")
	flag.Parse()
	benchenv.SurviveClosedOutput()
	if err := run(*berth, *testbin, *cache, *containerd, *pods, *settle); err != nil {
		fmt.Fprintln(os.Stderr, "bench/monitormem:", err)
		os.Exit(1)
	}
}

func run(berth, testbin, cache, containerd string, pods int, settle time.Duration) error {
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
	berthIdle, err := idleFootprint("berth", d.Pid(), settle)
	if err != nil {
		return err
	}
	if containerd != "" {
		cd, err := benchenv.StartContainerd(ctx, containerd, filepath.Join(work, "containerd"), env.Registry.HostsDir, env.CNIConfDir)
		if err != nil {
			return err
		}
		err = benchenv.Pull(ctx, cd.Socket, busybox)
		var cdIdle int
		if err == nil {
			cdIdle, err = idleFootprint("containerd", cd.Pid(), settle)
		}
		cd.Stop()
		if err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
		fmt.Printf("  idle RSS, berth / containerd: %.2f (goal #15: ≤ 0.5)\n", float64(berthIdle)/float64(cdIdle))
	}
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

// idleFootprint prints a daemon's memory just after a pull and once it
// has been left idle for settle, and returns the settled RSS (kB).
func idleFootprint(name string, pid int, settle time.Duration) (int, error) {
	var rss int
	for _, when := range []string{"at once", "after " + settle.String()} {
		if rss != 0 {
			time.Sleep(settle)
		}
		m, err := benchenv.SmapsRollup(pid)
		if err != nil {
			return 0, err
		}
		rss = m["Rss"]
		fmt.Printf("%-10s daemon after one pull, %-12s RSS %6.2f MB (anonymous %5.2f MB, file %5.2f MB), PSS %6.2f MB\n",
			name, when+":", mb(m["Rss"]), mb(m["Anonymous"]), mb(m["Rss"]-m["Anonymous"]), mb(m["Pss"]))
	}
	return rss, nil
}

func mb(kb int) float64 { return float64(kb) / 1024 }
