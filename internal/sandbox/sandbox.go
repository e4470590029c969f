package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/spec"
)

// Paths are what a sandbox made; a container spec mounts and joins them.
// A namespace path is "" where the pod uses the host's namespace.
type Paths struct {
	Dir                              string
	NetNS, IPCNS, UTSNS, UserNS      string
	Hostname, Hosts, ResolvConf, Shm string
}

// Spec is what the sandbox is made from.
type Spec struct {
	// Dir is the pod's own directory under --state; Create makes it.
	Dir    string
	Config *runtime.PodSandboxConfig
}

// hostResolvConf and hostHosts are copied for pods without DNS config and
// for host-network pods.
const (
	hostResolvConf = "/etc/resolv.conf"
	hostHosts      = "/etc/hosts"
)

// shmSize is the size of a pod's /dev/shm, as Docker and containerd give.
const shmSize = 64 << 20

// Create makes the pod's namespaces, files and /dev/shm. On failure it
// removes whatever it made.
func Create(s Spec) (p Paths, retErr error) {
	cfg := s.Config
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	p.Dir = s.Dir
	if err := os.MkdirAll(layout.Pod(s.Dir).Namespaces(), 0o700); err != nil {
		return p, err
	}
	defer func() {
		if retErr != nil {
			_ = Remove(s.Dir)
		}
	}()

	// A pod without a hostname keeps the host's, as a new UTS namespace
	// would (and as containerd does); host-network pods always have it.
	hostname := cfg.GetHostname()
	hostNet := opts.GetNetwork() == runtime.NamespaceMode_NODE
	if hostNet || hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return p, err
		}
		hostname = h
	}
	if len(hostname) > 64 {
		return p, fmt.Errorf("config.hostname %q is longer than 64 characters: %w", hostname, errdefs.ErrInvalidArgument)
	}

	pins := map[string]string{}
	if !hostNet {
		pins[NetNS] = nsFile(s.Dir, NetNS)
		pins[UTSNS] = nsFile(s.Dir, UTSNS)
	}
	if opts.GetIpc() != runtime.NamespaceMode_NODE {
		pins[IPCNS] = nsFile(s.Dir, IPCNS)
	}
	switch userns := opts.GetUsernsOptions(); {
	case userns != nil && userns.GetMode() == runtime.NamespaceMode_POD:
		p.UserNS = nsFile(s.Dir, UserNS)
		if err := pinInUserNamespace(pins, p.UserNS, spec.IDMaps(userns.GetUids()), spec.IDMaps(userns.GetGids()), hostname); err != nil {
			return p, err
		}
	case len(pins) > 0:
		if err := pinNamespaces(pins, hostname); err != nil {
			return p, err
		}
	}
	p.NetNS, p.IPCNS, p.UTSNS = pins[NetNS], pins[IPCNS], pins[UTSNS]

	p.Hostname = filepath.Join(s.Dir, "hostname")
	if err := os.WriteFile(p.Hostname, []byte(hostname+"\n"), 0o644); err != nil {
		return p, err
	}
	p.Hosts = filepath.Join(s.Dir, "hosts")
	if err := writeHosts(p.Hosts, hostNet); err != nil {
		return p, err
	}
	p.ResolvConf = filepath.Join(s.Dir, "resolv.conf")
	if err := writeResolvConf(p.ResolvConf, cfg.GetDnsConfig()); err != nil {
		return p, err
	}
	if opts.GetIpc() == runtime.NamespaceMode_NODE {
		p.Shm = "/dev/shm"
	} else {
		p.Shm = filepath.Join(s.Dir, "shm")
		if err := os.MkdirAll(p.Shm, 0o700); err != nil {
			return p, err
		}
		if err := unix.Mount("shm", p.Shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
			fmt.Sprintf("mode=1777,size=%d", shmSize)); err != nil {
			return p, fmt.Errorf("mount /dev/shm: %w", err)
		}
	}
	return p, nil
}

// Remove unmounts and deletes everything Create made in dir. It is
// idempotent: a second call, or a call after a failed Create, succeeds.
func Remove(dir string) error {
	pins := map[string]string{}
	for _, kind := range []string{NetNS, IPCNS, UTSNS, UserNS} {
		pins[kind] = nsFile(dir, kind)
	}
	errs := []error{unpinNamespaces(pins)}
	shm := filepath.Join(dir, "shm")
	if err := unix.Unmount(shm, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount shm: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		// Never delete a directory that may still hold mounts.
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove pod directory: %w", err)
	}
	return nil
}

func writeHosts(path string, hostNet bool) error {
	if hostNet {
		b, err := os.ReadFile(hostHosts)
		if err != nil {
			return err
		}
		return os.WriteFile(path, b, 0o644)
	}
	const hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	return os.WriteFile(path, []byte(hosts), 0o644)
}

// writeResolvConf writes the pod's DNS config, or the host's file when the
// pod has none.
func writeResolvConf(path string, dns *runtime.DNSConfig) error {
	if dns == nil || len(dns.GetServers())+len(dns.GetSearches())+len(dns.GetOptions()) == 0 {
		b, err := os.ReadFile(hostResolvConf)
		if errors.Is(err, os.ErrNotExist) {
			b = nil
		} else if err != nil {
			return err
		}
		return os.WriteFile(path, b, 0o644)
	}
	var sb strings.Builder
	if s := dns.GetSearches(); len(s) > 0 {
		fmt.Fprintf(&sb, "search %s\n", strings.Join(s, " "))
	}
	for _, server := range dns.GetServers() {
		fmt.Fprintf(&sb, "nameserver %s\n", server)
	}
	if o := dns.GetOptions(); len(o) > 0 {
		fmt.Fprintf(&sb, "options %s\n", strings.Join(o, " "))
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}
