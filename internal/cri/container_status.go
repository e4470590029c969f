package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// ContainerStatus reports one container, found by ID or unique ID prefix,
// with the semantics kubelet relies on: image is the image's first repo tag
// and image_ref its first repo digest when the image is known; an exited
// container without a reason gets Completed (code 0) or Error.
func (s *Service) ContainerStatus(ctx context.Context, r *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	c, err := s.store.Containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, info, err := s.containerStatus(c, r.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatusResponse{Status: st, Info: info}, nil
}

// containerStatus is a container's CRI status, and with verbose its info.
func (s *Service) containerStatus(c store.Container, verbose bool) (*runtime.ContainerStatus, map[string]string, error) {
	var cfg runtime.ContainerConfig
	if err := proto.Unmarshal(c.Config, &cfg); err != nil {
		return nil, nil, fmt.Errorf("decode config of container %s: %w", c.ID, err)
	}
	image, imageRef := c.Image, c.ImageID
	if img, err := s.images.Get(c.ImageID); err == nil {
		if len(img.RepoTags) > 0 {
			image = img.RepoTags[0]
		}
		if len(img.RepoDigests) > 0 {
			imageRef = img.RepoDigests[0]
		}
	}
	st := &runtime.ContainerStatus{
		Id:          c.ID,
		Metadata:    &runtime.ContainerMetadata{Name: c.Metadata.Name, Attempt: c.Metadata.Attempt},
		State:       containerState(c),
		CreatedAt:   c.CreatedAt.UnixNano(),
		StartedAt:   unixNanoOrZero(c.StartedAt),
		FinishedAt:  unixNanoOrZero(c.FinishedAt),
		ExitCode:    c.ExitCode,
		Image:       &runtime.ImageSpec{Image: image, Annotations: cfg.GetImage().GetAnnotations()},
		ImageRef:    imageRef,
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Labels,
		Annotations: c.Annotations,
		Mounts:      cfg.GetMounts(),
		LogPath:     c.LogFile,
		Resources:   &runtime.ContainerResources{Linux: cfg.GetLinux().GetResources()},
	}
	if c.State() == store.ContainerExited && st.Reason == "" {
		st.Reason = reasonCompleted
		if c.ExitCode != 0 {
			st.Reason = reasonError
		}
	}
	if c.StopSignal != "" {
		if sig, ok := runtime.Signal_value[strings.ToUpper(c.StopSignal)]; ok {
			st.StopSignal = runtime.Signal(sig)
		}
	}
	if u := c.User; u != nil {
		st.User = &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{Uid: u.UID, Gid: u.GID, SupplementalGroups: u.Groups}}
	}
	// The spec is read only when asked for, or for a record that predates
	// the user's being kept in it; a bundle that is gone (a remove in
	// progress) simply reports no user.
	var rawSpec []byte
	if verbose || c.User == nil {
		var sp *specs.Spec
		var specErr error
		if sp, rawSpec, specErr = bundleSpec(c.Bundle); specErr == nil && st.User == nil {
			st.User = &runtime.ContainerUser{Linux: specUser(sp)}
		}
	}
	if !verbose {
		return st, nil, nil
	}
	info, err := s.containerInfo(c, &cfg, rawSpec)
	if err != nil {
		return nil, nil, err
	}
	return st, map[string]string{"info": info}, nil
}

// specUser is the user the container's process runs as, from its OCI spec:
// what kubelet reports as the container's effective uid, gid and groups.
func specUser(sp *specs.Spec) *runtime.LinuxContainerUser {
	u := recordedUser(sp)
	return &runtime.LinuxContainerUser{Uid: u.UID, Gid: u.GID, SupplementalGroups: u.Groups}
}

// recordedUser is the spec's process user as a record keeps it.
func recordedUser(sp *specs.Spec) *store.ContainerUser {
	u := sp.Process.User
	// The groups are exactly the process's additional GIDs (the spec
	// puts the primary GID among them): what getgroups(2) returns inside.
	out := &store.ContainerUser{UID: int64(u.UID), GID: int64(u.GID)}
	for _, g := range u.AdditionalGids {
		out.Groups = append(out.Groups, int64(g))
	}
	return out
}

// containerInfo is the verbose JSON containerd's CRI gives, which tools
// (crictl inspect) read.
func (s *Service) containerInfo(c store.Container, cfg *runtime.ContainerConfig, rawSpec []byte) (string, error) {
	var ociSpec json.RawMessage
	if rawSpec != nil {
		ociSpec = rawSpec
	}
	cfgJSON, err := protojson.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	h := s.handlerSet().Default()
	if sb, err := s.store.Sandboxes.Get(c.SandboxID); err == nil {
		h = s.handlerOf(sb)
	}
	b, err := json.Marshal(map[string]any{
		"sandboxID":      c.SandboxID,
		"pid":            c.Pid,
		"removing":       false,
		"snapshotKey":    c.SnapshotKey,
		"snapshotter":    s.images.SnapshotterName(),
		"runtimeType":    "io.berth.oci",
		"runtimeOptions": map[string]string{"handler": h.Name, "binary": h.Path, "root": h.Root},
		"config":         json.RawMessage(cfgJSON),
		"runtimeSpec":    ociSpec,
	})
	if err != nil {
		return "", fmt.Errorf("encode container info: %w", err)
	}
	return string(b), nil
}

// ListContainers lists containers matching the filter: ID (or unique
// prefix), state, pod sandbox ID (or prefix) and label selector.
func (s *Service) ListContainers(ctx context.Context, r *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	f := r.GetFilter()
	var items []*runtime.Container
	for _, c := range s.store.Containers.List() {
		if f.GetId() != "" && !matchesID(c.ID, f.GetId()) {
			continue
		}
		if f.GetPodSandboxId() != "" && !matchesID(c.SandboxID, f.GetPodSandboxId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != containerState(c) {
			continue
		}
		if !matchesLabels(c.Labels, f.GetLabelSelector()) {
			continue
		}
		items = append(items, &runtime.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     &runtime.ContainerMetadata{Name: c.Metadata.Name, Attempt: c.Metadata.Attempt},
			Image:        &runtime.ImageSpec{Image: c.Image},
			ImageRef:     c.ImageID,
			ImageId:      c.ImageID,
			State:        containerState(c),
			CreatedAt:    c.CreatedAt.UnixNano(),
			Labels:       c.Labels,
			Annotations:  c.Annotations,
		})
	}
	return &runtime.ListContainersResponse{Containers: items}, nil
}

func containerState(c store.Container) runtime.ContainerState {
	switch c.State() {
	case store.ContainerRunning:
		return runtime.ContainerState_CONTAINER_RUNNING
	case store.ContainerExited:
		return runtime.ContainerState_CONTAINER_EXITED
	default:
		return runtime.ContainerState_CONTAINER_CREATED
	}
}

func unixNanoOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// matchesID reports whether a list filter's ID selects id: kubelet sends full
// IDs, crictl users type prefixes.
func matchesID(id, filter string) bool { return strings.HasPrefix(id, filter) }

// matchesLabels reports whether labels hold every key/value of selector.
func matchesLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
