package cri

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/network"
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
		if s.cfg.CNI.DefaultNetwork {
			wrote, err := network.WriteDefault(s.cfg.CNI.ConfDir, cidr)
			if err != nil {
				return nil, fmt.Errorf("rewrite the default network for pod CIDR %s: %w", cidr, err)
			}
			if wrote {
				s.logger.InfoContext(ctx, "default CNI network now uses the pod CIDR", slog.String("pod_cidr", cidr))
				s.resetDefaultBridge(ctx)
			}
		}
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}

// resetDefaultBridge deletes the default network's bridge after its subnet
// changed, so that the bridge plugin recreates it with the new gateway
// address. With pods still attached it is left alone (they would lose their
// network) and new pods fail until they are gone: kubelet sets the pod CIDR
// before it runs pods, so this is the unusual case.
func (s *Service) resetDefaultBridge(ctx context.Context) {
	for _, sb := range s.store.Sandboxes.List() {
		if sb.NetworkAttached {
			s.logger.WarnContext(ctx, "pods are attached to the default network: its bridge keeps the old subnet", "pod", sb.ID)
			return
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "link", "delete", network.DefaultBridge).CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "Cannot find device") {
		s.logger.WarnContext(ctx, "delete the default network's bridge", "bridge", network.DefaultBridge, "error", err, "output", string(out))
	}
}
