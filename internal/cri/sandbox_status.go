package cri

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// PodSandboxStatus reports one sandbox, found by ID or unique ID prefix.
func (s *Service) PodSandboxStatus(ctx context.Context, r *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	sb, err := s.store.Sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, info, err := s.podSandboxStatus(sb, r.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatusResponse{Status: st, Info: info}, nil
}

// podSandboxStatus is a pod's CRI status, and with verbose its info.
func (s *Service) podSandboxStatus(sb store.Sandbox, verbose bool) (*runtime.PodSandboxStatus, map[string]string, error) {
	var cfg runtime.PodSandboxConfig
	if err := proto.Unmarshal(sb.Config, &cfg); err != nil {
		return nil, nil, fmt.Errorf("decode config of pod %s: %w", sb.ID, err)
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if nsOpts == nil {
		nsOpts = &runtime.NamespaceOption{}
	}
	st := &runtime.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       podMetadata(sb),
		State:          sandboxState(sb),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Network:        podNetworkStatus(sb),
		Linux:          &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: nsOpts}},
		Labels:         sb.Labels,
		Annotations:    sb.Annotations,
		RuntimeHandler: sb.RuntimeHandler,
	}
	if !verbose {
		return st, nil, nil
	}
	cfgJSON, err := protojson.Marshal(&cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("encode config: %w", err)
	}
	// The sandbox's process: the pause container in the classic mode,
	// else the monitor.
	pid := sb.MonitorPid
	if sb.PauseContainer {
		pid = sb.PausePid
	}
	info, err := json.Marshal(map[string]any{
		"pid":            pid,
		"monitorPid":     sb.MonitorPid,
		"pausePid":       sb.PausePid,
		"pauseContainer": sb.PauseContainer,
		"monitorSocket":  sb.MonitorSocket,
		"paths":          sb.Paths,
		"cgroupParent":   sb.CgroupParent,
		"config":         json.RawMessage(cfgJSON),
		"runtimeSpec": map[string]any{
			"hostname":   cfg.GetHostname(),
			"namespaces": sb.Paths,
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("encode pod info: %w", err)
	}
	return st, map[string]string{"info": string(info)}, nil
}

// ListPodSandbox lists sandboxes matching the filter: ID (or unique prefix),
// state and label selector, all of which must match.
func (s *Service) ListPodSandbox(ctx context.Context, r *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	f := r.GetFilter()
	var items []*runtime.PodSandbox
	for _, sb := range s.store.Sandboxes.List() {
		if f.GetId() != "" && !matchesID(sb.ID, f.GetId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != sandboxState(sb) {
			continue
		}
		if !matchesLabels(sb.Labels, f.GetLabelSelector()) {
			continue
		}
		items = append(items, &runtime.PodSandbox{
			Id:             sb.ID,
			Metadata:       podMetadata(sb),
			State:          sandboxState(sb),
			CreatedAt:      sb.CreatedAt.UnixNano(),
			Labels:         sb.Labels,
			Annotations:    sb.Annotations,
			RuntimeHandler: sb.RuntimeHandler,
		})
	}
	return &runtime.ListPodSandboxResponse{Items: items}, nil
}

func podNetworkStatus(sb store.Sandbox) *runtime.PodSandboxNetworkStatus {
	st := &runtime.PodSandboxNetworkStatus{}
	if len(sb.IPs) > 0 {
		st.Ip = sb.IPs[0]
		for _, ip := range sb.IPs[1:] {
			st.AdditionalIps = append(st.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	}
	return st
}

func podMetadata(sb store.Sandbox) *runtime.PodSandboxMetadata {
	m := sb.Metadata
	return &runtime.PodSandboxMetadata{Name: m.Name, Uid: m.UID, Namespace: m.Namespace, Attempt: m.Attempt}
}

func sandboxState(sb store.Sandbox) runtime.PodSandboxState {
	if sb.Ready {
		return runtime.PodSandboxState_SANDBOX_READY
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY
}
