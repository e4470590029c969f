package spec

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSeccomp(t *testing.T) {
	newSpec := func() *specs.Spec {
		return &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: defaultCapabilities}}, Linux: &specs.Linux{}}
	}
	profile := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644)
	for _, tc := range []struct {
		name    string
		sc      *runtime.LinuxContainerSecurityContext
		want    string // defaultAction, "" for no filter
		wantErr bool
	}{
		{"unset", nil, "", false},
		{"unconfined", &runtime.LinuxContainerSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}}, "", false},
		{"runtime default", &runtime.LinuxContainerSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}}, "SCMP_ACT_ERRNO", false},
		{"deprecated path", &runtime.LinuxContainerSecurityContext{SeccompProfilePath: "runtime/default"}, "SCMP_ACT_ERRNO", false},
		{"localhost", &runtime.LinuxContainerSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: profile}}, "SCMP_ACT_ALLOW", false},
		{"privileged ignores it", &runtime.LinuxContainerSecurityContext{Privileged: true, SeccompProfilePath: "localhost/" + profile}, "", false},
		{"relative localhost", &runtime.LinuxContainerSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "p.json"}}, "", true},
		{"missing localhost", &runtime.LinuxContainerSecurityContext{SeccompProfilePath: "localhost/" + profile + ".missing"}, "", true},
	} {
		s := newSpec()
		err := applySeccomp(s, tc.sc)
		if tc.wantErr {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("%s: err = %v, want InvalidArgument", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := ""
		if s.Linux.Seccomp != nil {
			got = string(s.Linux.Seccomp.DefaultAction)
		}
		if got != tc.want {
			t.Errorf("%s: default action %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A Localhost profile that is no regular file is refused at once: a FIFO
// must not hang the daemon, a device must not flood it.
func TestLocalhostProfileMustBeAFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero", t.TempDir()} {
		if _, err := readProfile(path); err == nil {
			t.Errorf("%s: read as a profile", path)
		}
	}
}
