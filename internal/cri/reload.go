package cri

import (
	"context"

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
	l := &liveConfig{
		cfg:      cfg,
		handlers: ociruntime.NewSet(context.Background(), cfg.Runtime, s.cfg.State),
		network:  s.fakeNetwork,
		probe:    s.fakeProbe,
		criuPath: cfg.Checkpoint.CRIUPath,
	}
	if l.network == nil {
		l.network = network.New(cfg.CNI.ConfDir, cfg.CNI.BinDirs)
	}
	if l.probe == nil {
		confDir, binDirs := cfg.CNI.ConfDir, cfg.CNI.BinDirs
		l.probe = func() netconf.Result { return netconf.Probe(confDir, binDirs) }
	}
	for _, h := range l.handlers.All() {
		if h.Replaced != "" {
			s.logger.Info("handler runs its userns_path runtime: the one at path cannot run pods in user namespaces",
				"handler", h.Name, "runtime", h.Path, "instead_of", h.Replaced)
		}
	}
	return l
}

// Reconfigure applies the live keys of cfg (a validated config): handlers,
// CNI directories and the CRIU path, for calls that start from now on.
// Pods that run keep the handler binary and network they were made with;
// their records name the handler, whose state directory does not change.
func (s *Service) Reconfigure(cfg config.Config) {
	s.live.Store(s.newLiveConfig(cfg))
}

func (s *Service) handlerSet() *ociruntime.Set { return s.live.Load().handlers }

func (s *Service) podNetwork() podNetworks { return s.live.Load().network }
