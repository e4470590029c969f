// Command nriplugin is the NRI plugin berth's end-to-end tests run against
// a real daemon: a separate process on NRI's socket (or started by berth
// from nri.plugin_path), built with containerd/nri's stub like the
// upstream plugins. What it does to a pod or container is asked for by
// annotations on it (see the constants), so one plugin serves every test;
// each event it sees is one JSON line in -events.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// Annotations that ask the plugin for something.
const (
	// Veto is a comma-separated list of events the plugin refuses:
	// RunPodSandbox, UpdatePodSandbox (on the pod), CreateContainer,
	// StartContainer, UpdateContainer (on the container).
	Veto = "nri.test/veto"
	// Hang names an event the plugin never answers (the runtime's request
	// timeout ends it).
	Hang = "nri.test/hang"
	// Adjust asks for every adjustment below on CreateContainer.
	Adjust = "nri.test/adjust"
	// MountSource is a host directory mounted read-only at /nri-mount.
	MountSource = "nri.test/mount-source"
	// Memory is a memory limit in bytes, set at create.
	Memory = "nri.test/memory"
	// CDIDevice is a fully qualified CDI device to inject.
	CDIDevice = "nri.test/cdi-device"
	// HookFile is a host file a poststart hook creates.
	HookFile = "nri.test/hook-file"
	// CgroupsPath replaces the container's cgroups path.
	CgroupsPath = "nri.test/cgroups-path"
	// SeccompDeny is a comma-separated list of system calls the plugin's
	// seccomp policy (all else allowed) refuses with EPERM.
	SeccompDeny = "nri.test/seccomp-deny"
	// UpdateMemory replaces the memory limit of an UpdateContainer.
	UpdateMemory = "nri.test/update-memory"
)

// Event is one line of -events.
type Event struct {
	Event      string    `json:"event"`
	Pod        string    `json:"pod,omitempty"`
	Container  string    `json:"container,omitempty"`
	Pods       []string  `json:"pods,omitempty"`
	Containers []string  `json:"containers,omitempty"`
	ExitCode   int32     `json:"exit_code,omitempty"`
	Time       time.Time `json:"time"`
}

type plugin struct {
	mu     sync.Mutex
	events *os.File
	ready  string // file made once the runtime has synchronized the plugin
}

func (p *plugin) record(e Event) {
	e.Time = time.Now()
	b, _ := json.Marshal(e)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.events != nil {
		_, _ = p.events.Write(append(b, '\n'))
	}
}

func vetoes(annotations map[string]string, event string) bool {
	return slices.Contains(strings.Split(annotations[Veto], ","), event)
}

// hang never answers an event the annotations name: the runtime gives up
// at its request timeout and drops the plugin. (Answering when the call's
// context ends raced the runtime's own timeout: an answer that arrived
// first kept the plugin connected.) The plugin exits once dropped.
func hang(annotations map[string]string, event string) {
	if annotations[Hang] == event {
		select {}
	}
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	e := Event{Event: "Synchronize", Pods: []string{}, Containers: []string{}}
	for _, pod := range pods {
		e.Pods = append(e.Pods, pod.GetId())
	}
	for _, c := range ctrs {
		e.Containers = append(e.Containers, c.GetId())
	}
	p.record(e)
	if p.ready != "" {
		if err := os.WriteFile(p.ready, nil, 0o644); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (p *plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.record(Event{Event: "RunPodSandbox", Pod: pod.GetId()})
	hang(pod.GetAnnotations(), "RunPodSandbox")
	if vetoes(pod.GetAnnotations(), "RunPodSandbox") {
		return errors.New("vetoed by nri.test/veto")
	}
	return nil
}

func (p *plugin) UpdatePodSandbox(_ context.Context, pod *api.PodSandbox, _, res *api.LinuxResources) error {
	p.record(Event{Event: "UpdatePodSandbox", Pod: pod.GetId()})
	if vetoes(pod.GetAnnotations(), "UpdatePodSandbox") {
		return fmt.Errorf("vetoed by nri.test/veto (memory %d)", res.GetMemory().GetLimit().GetValue())
	}
	return nil
}

func (p *plugin) PostUpdatePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record(Event{Event: "PostUpdatePodSandbox", Pod: pod.GetId()})
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record(Event{Event: "StopPodSandbox", Pod: pod.GetId()})
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record(Event{Event: "RemovePodSandbox", Pod: pod.GetId()})
	return nil
}

func (p *plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record(Event{Event: "CreateContainer", Pod: pod.GetId(), Container: c.GetId()})
	a := c.GetAnnotations()
	hang(a, "CreateContainer")
	if vetoes(a, "CreateContainer") {
		return nil, nil, errors.New("vetoed by nri.test/veto")
	}
	adj := &api.ContainerAdjustment{}
	if a[Adjust] != "" {
		adj.AddEnv("NRI_ADJUSTED", "yes")
		adj.AddAnnotation("nri.test/adjusted", "yes")
		adj.AddRlimit("RLIMIT_NOFILE", 1234, 1234)
		oom := 900
		adj.SetLinuxOomScoreAdj(&oom)
		adj.AddDevice(&api.LinuxDevice{Path: "/dev/nri-zero", Type: "c", Major: 1, Minor: 5, FileMode: api.FileMode(0o666)})
	}
	if src := a[MountSource]; src != "" {
		adj.AddMount(&api.Mount{Source: src, Destination: "/nri-mount", Type: "bind", Options: []string{"rbind", "ro"}})
	}
	if v := a[Memory]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", Memory, err)
		}
		adj.SetLinuxMemoryLimit(n)
	}
	if d := a[CDIDevice]; d != "" {
		adj.AddCDIDevice(&api.CDIDevice{Name: d})
	}
	if f := a[HookFile]; f != "" {
		adj.AddHooks(&api.Hooks{Poststart: []*api.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo started > " + f}}}})
	}
	if cg := a[CgroupsPath]; cg != "" {
		adj.SetLinuxCgroupsPath(cg)
	}
	if deny := a[SeccompDeny]; deny != "" {
		adj.SetLinuxSeccompPolicy(&api.LinuxSeccomp{
			DefaultAction: "SCMP_ACT_ALLOW",
			Syscalls: []*api.LinuxSyscall{{
				Names: strings.Split(deny, ","), Action: "SCMP_ACT_ERRNO", ErrnoRet: &api.OptionalUInt32{Value: 1},
			}},
		})
	}
	return adj, nil, nil
}

func (p *plugin) PostCreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(Event{Event: "PostCreateContainer", Pod: pod.GetId(), Container: c.GetId()})
	return nil
}

func (p *plugin) StartContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(Event{Event: "StartContainer", Pod: pod.GetId(), Container: c.GetId()})
	hang(c.GetAnnotations(), "StartContainer")
	if vetoes(c.GetAnnotations(), "StartContainer") {
		return errors.New("vetoed by nri.test/veto")
	}
	return nil
}

func (p *plugin) PostStartContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(Event{Event: "PostStartContainer", Pod: pod.GetId(), Container: c.GetId()})
	return nil
}

func (p *plugin) UpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container, res *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record(Event{Event: "UpdateContainer", Pod: pod.GetId(), Container: c.GetId()})
	a := c.GetAnnotations()
	if vetoes(a, "UpdateContainer") {
		return nil, errors.New("vetoed by nri.test/veto")
	}
	if v := a[UpdateMemory]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", UpdateMemory, err)
		}
		u := &api.ContainerUpdate{}
		u.SetContainerId(c.GetId())
		u.SetLinuxMemoryLimit(n)
		if cpu := res.GetCpu(); cpu != nil && cpu.GetShares() != nil {
			u.SetLinuxCPUShares(cpu.GetShares().GetValue())
		}
		return []*api.ContainerUpdate{u}, nil
	}
	return nil, nil
}

func (p *plugin) PostUpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(Event{Event: "PostUpdateContainer", Pod: pod.GetId(), Container: c.GetId()})
	return nil
}

func (p *plugin) StopContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record(Event{Event: "StopContainer", Pod: pod.GetId(), Container: c.GetId(), ExitCode: c.GetExitCode()})
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(Event{Event: "RemoveContainer", Pod: pod.GetId(), Container: c.GetId()})
	return nil
}

func main() {
	socket := flag.String("socket", "", "NRI socket (none when berth started this plugin)")
	name := flag.String("name", "berth-test", "plugin name")
	idx := flag.String("idx", "50", "plugin index (its place in the order)")
	events := flag.String("events", "", "file to append events to, one JSON line each")
	reconnect := flag.Bool("reconnect", false, "connect again whenever the runtime goes away")
	ready := flag.String("ready", "", "file to make once synchronized")
	flag.Parse()
	p := &plugin{ready: *ready}
	if *events != "" {
		f, err := os.OpenFile(*events, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		p.events = f
	}
	opts := []stub.Option{}
	if os.Getenv(api.PluginSocketEnvVar) == "" {
		// Started by hand, not by the runtime (which names and orders it).
		opts = append(opts, stub.WithPluginName(*name), stub.WithPluginIdx(*idx), stub.WithSocketPath(*socket))
	}
	for {
		s, err := stub.New(p, opts...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nriplugin:", err)
			os.Exit(1)
		}
		err = s.Run(context.Background())
		p.record(Event{Event: "Disconnected"})
		if !*reconnect {
			fmt.Fprintln(os.Stderr, "nriplugin: runtime gone:", err)
			os.Exit(1)
		}
		time.Sleep(100 * time.Millisecond) // the runtime restarts
	}
}
