package cri

import (
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

// newCDICache reads CDI specs from dirs on demand (no watcher goroutines:
// injectCDIDevices refreshes it).
func newCDICache(dirs []string) *cdi.Cache {
	c, _ := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
	return c
}

// injectCDIDevices applies the CDI devices cfg asks for — its CDI_devices
// and, as kubelet's device plugins used to say it, cdi.k8s.io/ annotations
// — to the spec: device nodes, mounts, environment, hooks. A device no spec
// defines is refused.
func (s *Service) injectCDIDevices(cfg *runtime.ContainerConfig, sp *specs.Spec) error {
	var names []string
	for _, d := range cfg.GetCDIDevices() {
		names = append(names, d.GetName())
	}
	_, fromAnnotations, err := cdi.ParseAnnotations(cfg.GetAnnotations())
	if err != nil {
		return fmt.Errorf("annotations: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	for _, n := range fromAnnotations {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return s.injectCDINames(sp, names)
}

// injectCDINames applies the CDI devices of the given fully qualified
// names to the spec.
func (s *Service) injectCDINames(sp *specs.Spec, names []string) error {
	if len(names) == 0 {
		return nil
	}
	s.cdiMu.Lock()
	defer s.cdiMu.Unlock()
	if err := s.cdi.Refresh(); err != nil {
		// A broken spec file must not hide the devices of the good ones.
		s.logger.Warn("CDI specs with errors", "error", err)
	}
	unresolved, err := s.cdi.InjectDevices(sp, names...)
	if len(unresolved) > 0 {
		return fmt.Errorf("CDI_devices: %v not defined by any spec in %v: %w", unresolved, s.cfg.CDI.SpecDirs, errdefs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("CDI_devices %v: %w", names, err)
	}
	return nil
}
