package nri

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// AdjustOptions are the runtime's parts of applying an adjustment.
type AdjustOptions struct {
	// InjectCDI injects CDI devices, by fully qualified name, into a spec.
	InjectCDI func(*specs.Spec, []string) error
	// CheckResources refuses resources the host cannot hold.
	CheckResources func(*specs.LinuxResources) error
}

// Adjust applies plugins' adjustment of a container to its spec, in place.
// It changes only the spec: what the adjustment says about the record
// (annotations) the caller reads back from the spec.
func Adjust(sp *specs.Spec, adj *api.ContainerAdjustment, o AdjustOptions) error {
	if adj == nil {
		return nil
	}
	if sp.Process == nil {
		sp.Process = &specs.Process{}
	}
	if sp.Linux == nil {
		sp.Linux = &specs.Linux{}
	}
	opts := []generate.GeneratorOption{}
	if o.InjectCDI != nil {
		opts = append(opts, generate.WithCDIDeviceInjector(o.InjectCDI))
	}
	if o.CheckResources != nil {
		opts = append(opts, generate.WithResourceChecker(o.CheckResources))
	}
	// A plugin's rlimit replaces the spec's of that type: the generator
	// appends, and two of one type leave the runtime to pick.
	for _, r := range adj.GetRlimits() {
		sp.Process.Rlimits = slices.DeleteFunc(sp.Process.Rlimits, func(x specs.POSIXRlimit) bool { return x.Type == r.GetType() })
	}
	g := generate.SpecGenerator(&specEditor{sp}, opts...)
	if err := g.Adjust(adj); err != nil {
		return fmt.Errorf("apply NRI adjustment: %w", err)
	}
	return nil
}

// specEditor is the small OCI spec editor the NRI generator drives
// (generate.UnderlyingGenerator), over one spec.
type specEditor struct{ s *specs.Spec }

var _ generate.UnderlyingGenerator = (*specEditor)(nil)

func (e *specEditor) Spec() *specs.Spec { return e.s }

func (e *specEditor) linux() *specs.Linux {
	if e.s.Linux == nil {
		e.s.Linux = &specs.Linux{}
	}
	return e.s.Linux
}

func (e *specEditor) resources() *specs.LinuxResources {
	l := e.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (e *specEditor) cpu() *specs.LinuxCPU {
	r := e.resources()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (e *specEditor) memory() *specs.LinuxMemory {
	r := e.resources()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (e *specEditor) process() *specs.Process {
	if e.s.Process == nil {
		e.s.Process = &specs.Process{}
	}
	return e.s.Process
}

func (e *specEditor) hooks() *specs.Hooks {
	if e.s.Hooks == nil {
		e.s.Hooks = &specs.Hooks{}
	}
	return e.s.Hooks
}

func (e *specEditor) AddAnnotation(key, value string) {
	if e.s.Annotations == nil {
		e.s.Annotations = map[string]string{}
	}
	e.s.Annotations[key] = value
}

func (e *specEditor) RemoveAnnotation(key string) { delete(e.s.Annotations, key) }

func (e *specEditor) AddDevice(d specs.LinuxDevice) {
	l := e.linux()
	if i := slices.IndexFunc(l.Devices, func(x specs.LinuxDevice) bool { return x.Path == d.Path }); i >= 0 {
		l.Devices[i] = d
		return
	}
	l.Devices = append(l.Devices, d)
}

func (e *specEditor) RemoveDevice(path string) {
	l := e.linux()
	l.Devices = slices.DeleteFunc(l.Devices, func(x specs.LinuxDevice) bool { return x.Path == path })
}

func (e *specEditor) AddOrReplaceLinuxNamespace(ns, path string) error {
	l := e.linux()
	n := specs.LinuxNamespace{Type: specs.LinuxNamespaceType(ns), Path: path}
	if i := slices.IndexFunc(l.Namespaces, func(x specs.LinuxNamespace) bool { return x.Type == n.Type }); i >= 0 {
		l.Namespaces[i] = n
		return nil
	}
	l.Namespaces = append(l.Namespaces, n)
	return nil
}

func (e *specEditor) RemoveLinuxNamespace(ns string) error {
	l := e.linux()
	l.Namespaces = slices.DeleteFunc(l.Namespaces, func(x specs.LinuxNamespace) bool { return string(x.Type) == ns })
	return nil
}

func (e *specEditor) AddPreStartHook(h specs.Hook) {
	//nolint:staticcheck // NRI still offers prestart hooks.
	e.hooks().Prestart = append(e.hooks().Prestart, h)
}
func (e *specEditor) AddPostStartHook(h specs.Hook) {
	e.hooks().Poststart = append(e.hooks().Poststart, h)
}
func (e *specEditor) AddPostStopHook(h specs.Hook) {
	e.hooks().Poststop = append(e.hooks().Poststop, h)
}

// AddProcessEnv sets name=value, replacing an earlier value of name.
func (e *specEditor) AddProcessEnv(name, value string) {
	p := e.process()
	kv := name + "=" + value
	if i := slices.IndexFunc(p.Env, func(x string) bool { return strings.SplitN(x, "=", 2)[0] == name }); i >= 0 {
		p.Env[i] = kv
		return
	}
	p.Env = append(p.Env, kv)
}

func (e *specEditor) ClearProcessEnv() { e.process().Env = nil }

func (e *specEditor) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := e.resources()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

func (e *specEditor) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := e.resources()
	if i := slices.IndexFunc(r.HugepageLimits, func(x specs.LinuxHugepageLimit) bool { return x.Pagesize == pageSize }); i >= 0 {
		r.HugepageLimits[i].Limit = limit
		return
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (e *specEditor) AddLinuxResourcesUnified(key, val string) {
	r := e.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

// AddMount adds m; the generator removes one at the same destination first.
func (e *specEditor) AddMount(m specs.Mount) { e.s.Mounts = append(e.s.Mounts, m) }

func (e *specEditor) RemoveMount(dest string) {
	e.s.Mounts = slices.DeleteFunc(e.s.Mounts, func(m specs.Mount) bool { return m.Destination == dest })
}

func (e *specEditor) ClearMounts()          { e.s.Mounts = nil }
func (e *specEditor) Mounts() []specs.Mount { return slices.Clone(e.s.Mounts) }

func (e *specEditor) AddLinuxSysctl(key, value string) {
	l := e.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (e *specEditor) RemoveLinuxSysctl(key string) { delete(e.linux().Sysctl, key) }

func (e *specEditor) SetProcessArgs(args []string)  { e.process().Args = args }
func (e *specEditor) SetLinuxCgroupsPath(p string)  { e.linux().CgroupsPath = p }
func (e *specEditor) SetProcessOOMScoreAdj(adj int) { e.process().OOMScoreAdj = &adj }

func (e *specEditor) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
		e.linux().RootfsPropagation = rp
		return nil
	}
	return fmt.Errorf("rootfs propagation %q is not one of private, slave, shared, unbindable (r-)", rp)
}

func (e *specEditor) SetLinuxResourcesCPUCpus(cpus string) { e.cpu().Cpus = cpus }
func (e *specEditor) SetLinuxResourcesCPUMems(mems string) { e.cpu().Mems = mems }
func (e *specEditor) SetLinuxResourcesCPUPeriod(p uint64)  { e.cpu().Period = &p }
func (e *specEditor) SetLinuxResourcesCPUQuota(q int64)    { e.cpu().Quota = &q }
func (e *specEditor) SetLinuxResourcesCPUShares(s uint64)  { e.cpu().Shares = &s }
func (e *specEditor) SetLinuxResourcesMemoryLimit(l int64) { e.memory().Limit = &l }
func (e *specEditor) SetLinuxResourcesMemorySwap(s int64)  { e.memory().Swap = &s }
func (e *specEditor) SetLinuxResourcesCPURealtimePeriod(p uint64) {
	e.cpu().RealtimePeriod = &p
}
func (e *specEditor) SetLinuxResourcesCPURealtimeRuntime(t int64) {
	e.cpu().RealtimeRuntime = &t
}
