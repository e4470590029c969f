package e2eenv

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// KubeletOptions say how to run a standalone kubelet: no API server, static
// pods from a manifest directory, its HTTPS API on loopback.
type KubeletOptions struct {
	Binary        string // EnsureKubelet's
	Dir           string // holds its root dir, certs, manifests, pod logs, config and log
	RuntimeSocket string // the CRI socket (runtime and image service)
	NodeName      string // names its static pods: <pod>-<node>
}

// Kubelet is a running standalone kubelet.
type Kubelet struct {
	Dir       string
	Manifests string // its static pod directory
	PodLogs   string // its podLogsDir
	LogPath   string
	NodeName  string
	port      int
	cmd       *exec.Cmd
	exited    chan struct{}
	client    *http.Client
	sysctls   map[string][]byte
}

// kernelDefaults are the sysctls kubelet sets at start when
// protectKernelDefaults is off; Cleanup puts them back.
var kernelDefaults = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}

// StartKubelet starts kubelet and waits until its healthz answers. The
// settings are those these hosts need (../shared/notes/kubelet.md): cgroup
// v1 allowed, cgroupfs, no CAP_SYS_RESOURCE (oomScoreAdj 0, maxOpenFiles
// within the hard limit), standalone on loopback, eviction and image GC
// thresholds out of the way of a full test disk, and the gates for the
// newer CRI calls (EventedPLEG, CRIListStreaming). Stop, then Cleanup.
func StartKubelet(ctx context.Context, o KubeletOptions) (*Kubelet, error) {
	k := &Kubelet{
		Dir:       o.Dir,
		Manifests: filepath.Join(o.Dir, "manifests"),
		PodLogs:   filepath.Join(o.Dir, "pod-logs"),
		LogPath:   filepath.Join(o.Dir, "kubelet.log"),
		NodeName:  o.NodeName,
		exited:    make(chan struct{}),
		sysctls:   map[string][]byte{},
	}
	for _, d := range []string{k.Manifests, k.PodLogs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, s := range kernelDefaults {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			k.sysctls[s] = b
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	healthz, err := freePort()
	if err != nil {
		return nil, err
	}
	k.port = port
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
oomScoreAdj: 0
maxOpenFiles: %d
failSwapOn: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
registerNode: false
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
staticPodPath: %s
fileCheckFrequency: 1s
podLogsDir: %s
volumePluginDir: %s
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
featureGates:
  EventedPLEG: true
  CRIListStreaming: true
`, lim.Max, port, healthz, k.Manifests, k.PodLogs, filepath.Join(o.Dir, "volume-plugins"), o.RuntimeSocket, o.RuntimeSocket)
	cfgPath := filepath.Join(o.Dir, "kubelet.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(k.LogPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	k.cmd = exec.Command(o.Binary, "--config", cfgPath, "--root-dir", filepath.Join(o.Dir, "kubelet"),
		"--cert-dir", filepath.Join(o.Dir, "pki"), "--hostname-override", o.NodeName, "--v", "2")
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	if err := k.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kubelet: %w", err)
	}
	go func() { k.cmd.Wait(); close(k.exited) }()
	k.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // kubelet's self-signed serving cert
	}}
	err = k.WaitFor(ctx, 2*time.Minute, func() (bool, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz))
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	if err != nil {
		k.Stop()
		return nil, fmt.Errorf("kubelet healthz: %w (log: %s)", err, k.LogPath)
	}
	return k, nil
}

// WaitFor polls cond every 20 ms until it holds; it gives up with cond's
// last word after timeout, when ctx ends, or when kubelet exits. kubelet is
// another process acting on its own clock: polling its state is how it is
// seen.
func (k *Kubelet) WaitFor(ctx context.Context, timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return nil
		}
		select {
		case <-k.exited:
			return fmt.Errorf("kubelet exited (last: %s)", last)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %s)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s (last: %s)", timeout, last)
		}
	}
}

// Get calls kubelet's HTTPS API.
func (k *Kubelet) Get(method, path string) (int, []byte, error) {
	req, err := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", k.port, path), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// KubeletPod is the part of a v1.Pod that tests and benchmarks read.
type KubeletPod struct {
	Metadata struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase             string                   `json:"phase"`
		ContainerStatuses []KubeletContainerStatus `json:"containerStatuses"`
	} `json:"status"`
}

// KubeletContainerStatus is a v1.ContainerStatus, in part.
type KubeletContainerStatus struct {
	Name         string                `json:"name"`
	Ready        bool                  `json:"ready"`
	RestartCount int                   `json:"restartCount"`
	ContainerID  string                `json:"containerID"`
	State        KubeletContainerState `json:"state"`
	LastState    KubeletContainerState `json:"lastState"`
}

// KubeletContainerState is a v1.ContainerState, in part.
type KubeletContainerState struct {
	Running    *struct{} `json:"running"`
	Terminated *struct {
		ExitCode int    `json:"exitCode"`
		Reason   string `json:"reason"`
	} `json:"terminated"`
}

// Container returns the named container's status.
func (p KubeletPod) Container(name string) (KubeletContainerStatus, bool) {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == name {
			return c, true
		}
	}
	return KubeletContainerStatus{}, false
}

// Pods is kubelet's /pods by name: its static pods with their status (a
// kubelet without an API server reports its status manager's view there).
func (k *Kubelet) Pods() (map[string]KubeletPod, error) {
	code, b, err := k.Get(http.MethodGet, "/pods")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/pods: %d %s", code, b)
	}
	var list struct{ Items []KubeletPod }
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, err
	}
	out := map[string]KubeletPod{}
	for _, p := range list.Items {
		out[p.Metadata.Name] = p
	}
	return out, nil
}

// Pod returns the static pod made from manifest name, and its status as
// JSON for messages ("" and a reason when there is none yet).
func (k *Kubelet) Pod(name string) (KubeletPod, string) {
	pods, err := k.Pods()
	if err != nil {
		return KubeletPod{}, err.Error()
	}
	p, ok := pods[name+"-"+k.NodeName]
	if !ok {
		return KubeletPod{}, "no pod " + name + " yet"
	}
	b, _ := json.Marshal(p.Status)
	return p, string(b)
}

// WriteManifest puts a static pod in the manifest directory atomically
// (kubelet must never read half a file).
func (k *Kubelet) WriteManifest(name, yaml string) error {
	tmp := filepath.Join(filepath.Dir(k.Manifests), name+".yaml.tmp")
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(k.Manifests, name+".yaml"))
}

// RemoveManifest takes a static pod away.
func (k *Kubelet) RemoveManifest(name string) error {
	return os.Remove(filepath.Join(k.Manifests, name+".yaml"))
}

// Exited is closed when kubelet has exited.
func (k *Kubelet) Exited() <-chan struct{} { return k.exited }

// Stop sends SIGTERM and waits (SIGKILL after 30 s).
func (k *Kubelet) Stop() {
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(30 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.exited
	}
}

// Cleanup undoes what kubelet changed on the host: the mounts it made in
// its directory (it bind-mounts its root dir onto itself to make it
// shared), the sysctls it set, its /kubepods cgroup tree in every
// hierarchy, and its /var/log/containers links to this kubelet's pod logs.
// Call it after Stop and after the runtime's pods are gone (a cgroup
// holding tasks stays).
func (k *Kubelet) Cleanup() error {
	var errs []error
	mounts, err := mountsUnder(k.Dir)
	if err != nil {
		errs = append(errs, err)
	}
	for i := len(mounts) - 1; i >= 0; i-- { // the deepest last mounted
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	for s, b := range k.sysctls {
		if err := os.WriteFile("/proc/sys/"+s, b, 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	for _, root := range cgroupRoots() {
		if err := removeCgroupTree(filepath.Join(root, "kubepods")); err != nil {
			errs = append(errs, err)
		}
	}
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, k.PodLogs+"/") {
			if err := os.Remove(l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// cgroupRoots are the mounted cgroup hierarchies (v1 and unified).
func cgroupRoots() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var roots []string
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		if fs := strings.Fields(post); len(fs) > 0 && (fs[0] == "cgroup" || fs[0] == "cgroup2") {
			if f := strings.Fields(pre); len(f) > 4 {
				roots = append(roots, f[4])
			}
		}
	}
	return roots
}

// removeCgroupTree removes dir and its descendants, leaves first (rmdir
// removes a cgroup without children or tasks).
func removeCgroupTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rmdir %s: %w", dir, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
