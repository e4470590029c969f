package benchenv

import (
	"context"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// Env is what a benchmark runs berth with: a loopback registry serving the
// test images behind a hosts.toml mirror, the bridge + portmap + loopback CNI
// conflist, and a berth daemon using both. containerd, when a benchmark
// compares with it, is given the same mirror and conflist.
type Env struct {
	Registry   *e2eenv.TestRegistry
	CNIConfDir string
	Berth      *e2eenv.Daemon
}

// StartBerth builds that environment under work; extraConfig is appended
// to berth's config (other tables).
func StartBerth(ctx context.Context, work, berthBin, testbin, cache string, extraConfig ...string) (*Env, error) {
	return StartBerthWith(ctx, work, berthBin, testbin, cache, e2eenv.DaemonOptions{ExtraConfig: strings.Join(extraConfig, "\n")})
}

// StartBerthWith is StartBerth with more of the daemon's options (its
// binary, directory and registry are set here; the CNI config directory
// too, with e2eenv's conflist, unless o names one). berth logs at its
// default level (info), as an operator runs it and as containerd runs
// beside it, unless o says otherwise: the tests' debug log writes a line
// per call.
func StartBerthWith(ctx context.Context, work, berthBin, testbin, cache string, o e2eenv.DaemonOptions) (*Env, error) {
	reg, err := e2eenv.ServeTestImages(ctx, cache, testbin, filepath.Join(work, "hosts"))
	if err != nil {
		return nil, err
	}
	netd := o.CNIConfDir
	if netd == "" {
		netd = filepath.Join(work, "net.d")
		if err := e2eenv.WriteCNIConfig(netd); err != nil {
			reg.Close()
			return nil, err
		}
	}
	o.Binary, o.Dir, o.RegistryConfigPath = berthBin, filepath.Join(work, "berth"), reg.HostsDir
	o.CNIConfDir, o.CNIBinDirs = netd, []string{"/usr/lib/cni"}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	d, err := e2eenv.StartDaemon(ctx, o)
	if err != nil {
		reg.Close()
		return nil, err
	}
	return &Env{Registry: reg, CNIConfDir: netd, Berth: d}, nil
}

// Close stops berth (if still running) and the registry.
func (e *Env) Close() {
	select {
	case <-e.Berth.Exited():
	default:
		e.Berth.Stop()
	}
	e.Registry.Close()
}

// SurviveClosedOutput keeps a benchmark running to its cleanup when its
// output goes to a pipe that closes (`| head`): Go otherwise exits on the
// first write to a closed standard output, leaving daemons, pods, mounts
// and IP reservations behind. Writes then fail instead.
func SurviveClosedOutput() { signal.Ignore(syscall.SIGPIPE) }
