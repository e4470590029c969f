package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/ociruntime"
	"github.com/berth-cri/berth/internal/sysinfo"
)

// Reason given in RuntimeReady when the OCI runtime binary is missing.
const reasonRuntimeMissing = "RuntimeBinaryMissing"

// Status reports whether berth can run containers (RuntimeReady) and give
// them a network (NetworkReady). Both are re-evaluated on every call: a
// runtime installed or a CNI config dropped in later is picked up without a
// restart.
func (s *Service) Status(ctx context.Context, r *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	runtimeCond := &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Status: true}
	def := s.handlerSet().Default()
	if _, err := exec.LookPath(def.Path); err != nil {
		runtimeCond.Status = false
		runtimeCond.Reason = reasonRuntimeMissing
		runtimeCond.Message = fmt.Sprintf("OCI runtime %q of the default handler %q not found in PATH; install it (apt-get install %s)", def.Path, def.Name, filepath.Base(def.Path))
	}
	net := s.live.Load().probe()
	netCond := &runtime.RuntimeCondition{
		Type:    runtime.NetworkReady,
		Status:  net.Ready,
		Reason:  net.Reason,
		Message: net.Message,
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{runtimeCond, netCond}},
		// The default handler under "" (pods without a RuntimeClass), then
		// every handler by name.
		RuntimeHandlers: []*runtime.RuntimeHandler{runtimeHandler(ctx, s.handlerSet(), def, "")},
		Features:        &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	for _, h := range s.handlerSet().All() {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, runtimeHandler(ctx, s.handlerSet(), h, h.Name))
	}
	if r.GetVerbose() {
		info, err := s.verboseStatus(net)
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

// runtimeHandler is a handler as Status lists it, under name.
func runtimeHandler(ctx context.Context, set *ociruntime.Set, h ociruntime.Handler, name string) *runtime.RuntimeHandler {
	f := set.Features(ctx, h)
	return &runtime.RuntimeHandler{Name: name, Features: &runtime.RuntimeHandlerFeatures{
		RecursiveReadOnlyMounts: f.RecursiveReadOnlyMounts,
		UserNamespaces:          f.UserNamespaces,
	}}
}

// verboseStatus is the Info map of a verbose Status: each value is JSON, as
// crictl info prints it.
func (s *Service) verboseStatus(net any) (map[string]string, error) {
	cgroupVersion, _ := sysinfo.CgroupVersion()
	s.mu.Lock()
	podCIDR := s.podCIDR
	s.mu.Unlock()
	subscribers, cutOff := s.events.stats()
	entries := map[string]any{
		"config":  s.live.Load().cfg,
		"network": net,
		// GetContainerEvents: subscribers now, and those cut off so far for
		// falling behind (each then relists).
		"containerEvents": map[string]any{"subscribers": subscribers, "cut_off": cutOff},
		"nri":             s.nriStatus(),
		"runtime": map[string]any{
			"default_handler": s.handlerSet().Default().Name,
			"handlers":        s.handlerSet().All(),
			"cgroup_driver":   sysinfo.CgroupDriver(s.cfg.Runtime.CgroupDriver),
			"cgroup_version":  cgroupVersion,
			"pod_cidr":        podCIDR,
		},
	}
	info := make(map[string]string, len(entries))
	for k, v := range entries {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode verbose %s: %w", k, err)
		}
		info[k] = string(b)
	}
	return info, nil
}
