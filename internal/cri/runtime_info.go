package cri

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/sysinfo"
	"github.com/berth-cri/berth/internal/version"
)

// The names Version reports. kubeAPIVersion is the version of the kubelet's
// runtime API, a constant of CRI v1.
const (
	RuntimeName       = "berth"
	RuntimeAPIVersion = "v1"
	kubeAPIVersion    = "0.1.0"
)

// Version reports berth's name and version.
func (s *Service) Version(ctx context.Context, r *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       RuntimeName,
		RuntimeVersion:    version.String(),
		RuntimeApiVersion: RuntimeAPIVersion,
	}, nil
}

// RuntimeConfig reports the cgroup driver in use, so kubelet can match it.
func (s *Service) RuntimeConfig(ctx context.Context, r *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	driver := runtime.CgroupDriver_CGROUPFS
	if sysinfo.CgroupDriver(s.cfg.Runtime.CgroupDriver) == "systemd" {
		driver = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{
		Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: driver},
	}, nil
}

// UpdateRuntimeConfig takes the pod CIDR kubelet assigns to this node. The
// default CNI network uses it; an empty CIDR leaves the current one.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, r *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	cidr := r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtime.UpdateRuntimeConfigResponse{}, nil
	}
	// kubelet sends dual-stack CIDRs comma-separated.
	for _, c := range strings.Split(cidr, ",") {
		if _, err := netip.ParsePrefix(strings.TrimSpace(c)); err != nil {
			return nil, fmt.Errorf("runtime_config.network_config.pod_cidr %q: %v: %w", cidr, err, errdefs.ErrInvalidArgument)
		}
	}
	s.mu.Lock()
	changed := s.podCIDR != cidr
	s.podCIDR = cidr
	s.mu.Unlock()
	if changed {
		s.logger.InfoContext(ctx, "pod CIDR updated", slog.String("pod_cidr", cidr))
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
