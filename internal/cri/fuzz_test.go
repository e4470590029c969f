package cri

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzValidatePodConfig decodes a PodSandboxConfig from arbitrary protobuf
// bytes and validates it as RunPodSandbox does. It must never panic, and a
// refusal is the client's doing: every error carries an errdefs class, so
// it reaches the client as InvalidArgument, FailedPrecondition and the
// like, never as Unknown or Internal.
func FuzzValidatePodConfig(f *testing.F) {
	meta := &runtime.PodSandboxMetadata{Name: "p", Uid: "u", Namespace: "default"}
	maps := func(container, host, length uint32) []*runtime.IDMapping {
		return []*runtime.IDMapping{{ContainerId: container, HostId: host, Length: length}}
	}
	secctx := func(ns *runtime.NamespaceOption) *runtime.LinuxPodSandboxConfig {
		return &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: ns}}
	}
	for _, cfg := range []*runtime.PodSandboxConfig{
		{},
		{Metadata: &runtime.PodSandboxMetadata{Name: "p"}},
		{Metadata: meta, LogDirectory: "/var/log/pods/p", Hostname: "h",
			DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"svc"}, Options: []string{"ndots:5"}},
			PortMappings: []*runtime.PortMapping{{Protocol: runtime.Protocol_UDP, ContainerPort: 53, HostPort: 53, HostIp: "127.0.0.1"}},
			Labels:       map[string]string{"app": "a"},
			Annotations:  map[string]string{"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "1G"},
			Linux: &runtime.LinuxPodSandboxConfig{
				CgroupParent: "/kubepods/pod1",
				Sysctls:      map[string]string{"net.ipv4.ip_forward": "1", "kernel/shmmax": "1024", "fs.mqueue.msg_max": "9"},
				SecurityContext: &runtime.LinuxSandboxSecurityContext{
					SelinuxOptions:   &runtime.SELinuxOption{Level: "s0:c1,c2"},
					NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER},
				},
			}},
		{Metadata: meta, LogDirectory: "relative/dir"},
		{Metadata: meta, Annotations: map[string]string{"kubernetes.io/ingress-bandwidth": "lots"}},
		{Metadata: meta, Annotations: map[string]string{"kubernetes.io/egress-bandwidth": "1"}},
		// resource.ParseQuantity alone would spend tens of minutes and
		// gigabytes on this one.
		{Metadata: meta, Annotations: map[string]string{"kubernetes.io/ingress-bandwidth": "1e-999999999"}},
		{Metadata: meta, Linux: &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.hostname": "x"}}},
		{Metadata: meta, Linux: &runtime.LinuxPodSandboxConfig{
			Sysctls:         map[string]string{"net.core.somaxconn": "1024", "kernel.msgmax": "1"},
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE}},
		}},
		{Metadata: meta, Linux: secctx(&runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{
			Mode: runtime.NamespaceMode_POD, Uids: maps(0, 100000, 65536), Gids: maps(0, 100000, 65536)}})},
		{Metadata: meta, Linux: secctx(&runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{
			Mode: runtime.NamespaceMode_POD, Uids: maps(0, 1<<32-2, 2), Gids: maps(1, 0, 0)}})},
		{Metadata: meta, Linux: secctx(&runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, UsernsOptions: &runtime.UserNamespace{
			Mode: runtime.NamespaceMode_POD, Uids: maps(0, 100000, 65536), Gids: maps(0, 100000, 65536)}})},
		{Metadata: meta, Linux: secctx(&runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}})},
		{Metadata: meta, Linux: secctx(&runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}})},
	} {
		b, err := proto.Marshal(cfg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := &runtime.PodSandboxConfig{}
		if proto.Unmarshal(b, cfg) != nil {
			return
		}
		checkClientError(t, "validatePodConfig", validatePodConfig(cfg))
		ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
		checkClientError(t, "checkUserns", checkUserns(ns))
		for key := range cfg.GetLinux().GetSysctls() {
			checkClientError(t, "checkSysctl", checkSysctl(key, ns))
		}
	})
}

// checkClientError fails t when err, sent through the interceptor, would
// not tell the client that its request was at fault.
func checkClientError(t *testing.T, call string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	switch code := status.Code(ToStatus(err)); code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
	default:
		t.Errorf("%s: %q reaches the client as %s", call, err, code)
	}
}

// FuzzContainerLogFile: the log file CreateContainer derives from the pod's
// log_directory and the container's log_path never leaves the directory.
func FuzzContainerLogFile(f *testing.F) {
	for _, s := range [][2]string{
		{"/var/log/pods/ns_p_u", "c/0.log"},
		{"/var/log/pods/ns_p_u", "c/../c/1.log"},
		{"/var/log/pods/ns_p_u", "../ns_p_u2/c/0.log"},
		{"/var/log/pods/ns_p_u", "../../../etc/passwd"},
		{"/var/log/pods/ns_p_u", "/etc/passwd"},
		{"/var/log/pods/ns_p_u/", "./x"},
		{"/var/log/pods/../../etc", "shadow"},
		{"/", "x"},
		{"relative/dir", "x/../../dir/y"},
		{"", "c/0.log"},
		{"/var/log/pods/ns_p_u", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, dir, rel string) {
		p, err := containerLogFile(dir, rel)
		if err != nil {
			checkClientError(t, "containerLogFile", err)
			return
		}
		if rel == "" {
			if p != "" {
				t.Errorf("containerLogFile(%q, \"\") = %q, want no log", dir, p)
			}
			return
		}
		r, err := filepath.Rel(filepath.Clean(dir), p)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") || filepath.IsAbs(r) {
			t.Errorf("containerLogFile(%q, %q) = %q, outside the directory", dir, rel, p)
		}
	})
}
