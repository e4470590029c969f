// Package network attaches pods to the CNI network: CNI ADD into the pod's
// pinned network namespace with the kubelet's K8S_POD_* arguments and the
// port-mapping capability, and CNI DEL on stop, through go-cni and the
// plugins in cni.bin_dirs. The config is reloaded whenever the config file
// chosen from cni.conf_dir changes, so a config dropped in later is used
// without a restart.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/netconf"
)

// Pod identifies a pod to CNI plugins.
type Pod struct {
	ID, Name, Namespace, UID string
	// NetNS is the pinned network namespace file.
	NetNS string
	Ports []*runtime.PortMapping
	DNS   *runtime.DNSConfig
	// Bandwidth is the pod's traffic shaping (see Bandwidth), nil for none.
	Bandwidth *gocni.BandWidth
}

// Manager runs CNI for pods. Safe for concurrent use.
type Manager struct {
	confDir string
	binDirs []string

	mu     sync.Mutex
	cni    handles // guarded by mu; nil handles until a config loads
	loaded string  // file@mtime of the loaded config; guarded by mu
}

// handles are the loaded network: full, and without the portmap plugin for
// pods that map no host port. portmap does nothing for those on ADD, yet
// its DEL costs several iptables runs; the same choice is made on ADD and
// DEL, since both follow the pod's own port mappings. Both leave out a
// loopback plugin: berth brings lo up when it creates the namespace, and
// the plugin would only do it again at the price of a process per ADD and
// DEL.
type handles struct {
	full, noPortmap gocni.CNI
}

func (h handles) forPod(p Pod) gocni.CNI {
	if h.noPortmap != nil && !p.hasHostPorts() {
		return h.noPortmap
	}
	return h.full
}

func (p Pod) hasHostPorts() bool {
	for _, pm := range p.Ports {
		if pm.GetHostPort() > 0 {
			return true
		}
	}
	return false
}

// New returns a manager for the configs in confDir and plugins in binDirs.
func New(confDir string, binDirs []string) *Manager {
	return &Manager{confDir: confDir, binDirs: binDirs}
}

// current returns the CNI handles for the config currently chosen from the
// directory, (re)loading it when the file or its modification time changed.
func (m *Manager) current() (handles, error) {
	probe := netconf.Probe(m.confDir, m.binDirs)
	if !probe.Ready {
		return handles{}, fmt.Errorf("pod network not ready: %s: %w", probe.Message, errdefs.ErrFailedPrecondition)
	}
	fi, err := os.Stat(probe.File)
	if err != nil {
		return handles{}, fmt.Errorf("cni config: %w", err)
	}
	key := probe.File + "@" + fi.ModTime().Format(time.RFC3339Nano)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cni.full != nil && m.loaded == key {
		return m.cni, nil
	}
	var full gocni.CNI
	if list, ok := withoutPlugins(probe.File, "loopback"); ok {
		full, err = m.load(gocni.WithConfListBytes(list))
	} else if full, err = m.load(gocni.WithConfListFile(probe.File)); err != nil {
		full, err = m.load(gocni.WithConfFile(probe.File))
	}
	if err != nil {
		return handles{}, fmt.Errorf("load cni config %s: %w", probe.File, err)
	}
	h := handles{full: full}
	if slim, ok := withoutPlugins(probe.File, "loopback", "portmap"); ok {
		if h.noPortmap, err = m.load(gocni.WithConfListBytes(slim)); err != nil {
			return handles{}, fmt.Errorf("load cni config %s without portmap: %w", probe.File, err)
		}
	}
	m.cni, m.loaded = h, key
	return h, nil
}

func (m *Manager) load(opt gocni.Opt) (gocni.CNI, error) {
	c, err := gocni.New(gocni.WithPluginConfDir(m.confDir), gocni.WithPluginDir(m.binDirs),
		gocni.WithInterfacePrefix("eth"), gocni.WithMinNetworkCount(1))
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	if err := c.Load(opt); err != nil {
		return nil, err
	}
	return c, nil
}

// withoutPlugins returns the conflist at file minus its plugins of the
// given types, and whether it had any (and keeps at least one other).
func withoutPlugins(file string, types ...string) ([]byte, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, false
	}
	var list map[string]any
	if json.Unmarshal(b, &list) != nil {
		return nil, false
	}
	plugins, _ := list["plugins"].([]any)
	var kept []any
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && slices.Contains(types, fmt.Sprint(m["type"])) {
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == len(plugins) || len(kept) == 0 {
		return nil, false
	}
	list["plugins"] = kept
	out, err := json.Marshal(list)
	return out, err == nil
}

func (p Pod) opts() []gocni.NamespaceOpts {
	opts := []gocni.NamespaceOpts{gocni.WithLabels(map[string]string{
		"K8S_POD_NAMESPACE":          p.Namespace,
		"K8S_POD_NAME":               p.Name,
		"K8S_POD_INFRA_CONTAINER_ID": p.ID,
		"K8S_POD_UID":                p.UID,
		"IgnoreUnknown":              "1",
	})}
	var ports []gocni.PortMapping
	for _, pm := range p.Ports {
		if pm.GetHostPort() <= 0 {
			continue
		}
		ports = append(ports, gocni.PortMapping{
			HostPort:      pm.GetHostPort(),
			ContainerPort: pm.GetContainerPort(),
			Protocol:      strings.ToLower(pm.GetProtocol().String()),
			HostIP:        pm.GetHostIp(),
		})
	}
	opts = append(opts, gocni.WithCapabilityPortMap(ports))
	if d := p.DNS; d != nil {
		opts = append(opts, gocni.WithCapabilityDNS(gocni.DNS{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}))
	}
	if p.Bandwidth != nil {
		opts = append(opts, gocni.WithCapabilityBandWidth(*p.Bandwidth))
	}
	return opts
}

// Setup attaches the pod (CNI ADD) and returns its IP addresses, IPv4
// first. On failure it detaches again, so no IP or rule is left.
func (m *Manager) Setup(ctx context.Context, p Pod) ([]string, error) {
	h, err := m.current()
	if err != nil {
		return nil, err
	}
	c := h.forPod(p)
	remove := func() {
		// Bounded: a hung plugin must not hold the failed call forever.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		_ = c.Remove(dctx, p.ID, p.NetNS, p.opts()...)
		cancel()
	}
	res, err := c.Setup(ctx, p.ID, p.NetNS, p.opts()...)
	if err != nil && racedOnSharedChain(err) {
		// The race is over once the chain exists: undo this ADD and go
		// again, once.
		remove()
		res, err = c.Setup(ctx, p.ID, p.NetNS, p.opts()...)
	}
	if err != nil {
		remove()
		return nil, fmt.Errorf("cni add: %w", err)
	}
	var v4, v6 []string
	for name, iface := range res.Interfaces {
		if name == "lo" {
			continue
		}
		for _, ipc := range iface.IPConfigs {
			if ip := ipc.IP; ip != nil && !ip.IsLoopback() {
				if ip.To4() != nil {
					v4 = append(v4, ip.String())
				} else {
					v6 = append(v6, ip.String())
				}
			}
		}
	}
	return append(v4, v6...), nil
}

// racedOnSharedChain reports a CNI ADD that lost a race to create a chain
// the plugins share between pods. portmap (Debian 12's plugins, 1.1.1)
// makes its top-level chains (CNI-HOSTPORT-DNAT, …) on first use with a bare
// `iptables -N`: two pods set up at once on a host that has none yet both
// try, and the loser fails with "File exists" although the chain is there
// by then. Seen on the first TestChaos run after hack/fresh-host.sh.
func racedOnSharedChain(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "CHAIN_USER_ADD failed (File exists)") || strings.Contains(msg, "Chain already exists")
}

// ErrNoConfig means no CNI config is loadable now, nor was one ever loaded
// by this daemon: a detach cannot run.
var ErrNoConfig = errors.New("no CNI config to run DEL with")

// Teardown detaches the pod (CNI DEL). It is idempotent and works when the
// namespace is already gone: the plugins still release the IP and rules.
// If the config has since become unloadable, the last loaded one is used.
func (m *Manager) Teardown(ctx context.Context, p Pod) error {
	h, err := m.current()
	if err != nil {
		m.mu.Lock()
		h = m.cni
		m.mu.Unlock()
		if h.full == nil {
			return fmt.Errorf("%w: %v", ErrNoConfig, err)
		}
	}
	c := h.forPod(p)
	if _, err := os.Stat(p.NetNS); err != nil {
		p.NetNS = ""
	}
	if err := c.Remove(ctx, p.ID, p.NetNS, p.opts()...); err != nil {
		return fmt.Errorf("cni del: %w", err)
	}
	return nil
}
