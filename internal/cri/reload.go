package cri

import (
	"context"
	"reflect"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/netconf"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/ociruntime"
)

// liveConfig is what a config reload changes while pods run: the
// RuntimeClass handlers for new pods, the CNI directories, the CRIU path.
// Calls read it once (Load) and use that one view; a reload swaps it whole.
type liveConfig struct {
	cfg      config.Config // as last loaded: what verbose Status shows
	handlers *ociruntime.Set
	network  podNetworks
	probe    func() netconf.Result
	criuPath string
}

func (s *Service) newLiveConfig(cfg config.Config) *liveConfig {
	l := &liveConfig{cfg: cfg, handlers: s.newHandlers(cfg), criuPath: cfg.Checkpoint.CRIUPath}
	l.network, l.probe = s.newNetwork(cfg)
	return l
}

// newHandlers builds the handler set, asking each runtime what it can do.
func (s *Service) newHandlers(cfg config.Config) *ociruntime.Set {
	set := ociruntime.NewSet(context.Background(), cfg.Runtime, s.cfg.State)
	for _, h := range set.All() {
		if h.Replaced != "" {
			s.logger.Info("handler runs its userns_path runtime: the one at path cannot run pods in user namespaces",
				"handler", h.Name, "runtime", h.Path, "instead_of", h.Replaced)
		}
	}
	return set
}

// newNetwork builds the CNI manager and its readiness probe (the fakes
// tests passed in, when they did).
func (s *Service) newNetwork(cfg config.Config) (podNetworks, func() netconf.Result) {
	n, probe := s.fakeNetwork, s.fakeProbe
	if n == nil {
		n = network.New(cfg.CNI.ConfDir, cfg.CNI.BinDirs)
	}
	if probe == nil {
		confDir, binDirs := cfg.CNI.ConfDir, cfg.CNI.BinDirs
		probe = func() netconf.Result { return netconf.Probe(confDir, binDirs) }
	}
	return n, probe
}

// Reconfigure applies the live keys of cfg (a validated config): handlers,
// CNI directories and the CRIU path, for calls that start from now on.
// Pods that run keep the handler binary and network they were made with;
// their records name the handler, whose state directory does not change.
// What did not change is kept as it is (no new probe of the runtimes).
func (s *Service) Reconfigure(cfg config.Config) {
	old := s.live.Load()
	next := &liveConfig{cfg: cfg, handlers: old.handlers, network: old.network, probe: old.probe, criuPath: cfg.Checkpoint.CRIUPath}
	if !reflect.DeepEqual(old.cfg.Runtime, cfg.Runtime) {
		next.handlers = s.newHandlers(cfg)
	}
	if !reflect.DeepEqual(old.cfg.CNI, cfg.CNI) {
		next.network, next.probe = s.newNetwork(cfg)
	}
	s.live.Store(next)
}

func (s *Service) handlerSet() *ociruntime.Set { return s.live.Load().handlers }

func (s *Service) podNetwork() podNetworks { return s.live.Load().network }
