package spec

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtimeDefaultAppArmor are the profiles, in order, RuntimeDefault means on
// an AppArmor host: the container runtimes' usual defaults. berth does not
// write one itself.
var runtimeDefaultAppArmor = []string{"cri-containerd.apparmor.d", "docker-default"}

// applyAppArmor sets the process's AppArmor profile. loaded holds the
// host's loaded profiles; nil means the host has no AppArmor, where
// RuntimeDefault and Unconfined mean nothing and a named profile cannot be
// honoured.
func applyAppArmor(s *specs.Spec, sc *runtime.LinuxContainerSecurityContext, loaded map[string]bool) error {
	kind, name := appArmorRequest(sc)
	switch kind {
	case runtime.SecurityProfile_Unconfined:
		return nil
	case runtime.SecurityProfile_RuntimeDefault:
		if loaded == nil {
			return nil
		}
		for _, p := range runtimeDefaultAppArmor {
			if loaded[p] {
				s.Process.ApparmorProfile = p
				return nil
			}
		}
		return fmt.Errorf("linux.security_context.apparmor: RuntimeDefault needs one of the profiles %v loaded on this AppArmor host: %w", runtimeDefaultAppArmor, errdefs.ErrFailedPrecondition)
	default: // Localhost
		if loaded == nil {
			return fmt.Errorf("linux.security_context.apparmor: profile %q asked for, but this host has no AppArmor: %w", name, errdefs.ErrFailedPrecondition)
		}
		if !loaded[name] {
			return fmt.Errorf("linux.security_context.apparmor: profile %q is not loaded: %w", name, errdefs.ErrFailedPrecondition)
		}
		s.Process.ApparmorProfile = name
		return nil
	}
}

// appArmorRequest reads the apparmor field, or the deprecated
// apparmor_profile ("runtime/default", "unconfined", "localhost/<name>").
// Nothing asked is Unconfined... unless the deprecated field is set.
func appArmorRequest(sc *runtime.LinuxContainerSecurityContext) (runtime.SecurityProfile_ProfileType, string) {
	if p := sc.GetApparmor(); p != nil {
		return p.GetProfileType(), p.GetLocalhostRef()
	}
	switch v := sc.GetApparmorProfile(); {
	case v == "runtime/default":
		return runtime.SecurityProfile_RuntimeDefault, ""
	case strings.HasPrefix(v, "localhost/"):
		return runtime.SecurityProfile_Localhost, strings.TrimPrefix(v, "localhost/")
	default:
		return runtime.SecurityProfile_Unconfined, ""
	}
}
