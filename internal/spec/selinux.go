package spec

import (
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CheckSELinux refuses SELinux options that would go unapplied where they
// matter: berth does not label processes or mounts, so on a host that runs
// SELinux a requested label is FailedPrecondition, never silently dropped.
// On a host without SELinux there is nothing to apply them to, and they are
// ignored, as containerd does (its enable_selinux defaults to false).
func CheckSELinux(field string, o *runtime.SELinuxOption, hostEnabled bool) error {
	if !hostEnabled || o.GetUser()+o.GetRole()+o.GetType()+o.GetLevel() == "" {
		return nil
	}
	return fmt.Errorf("%s: this host runs SELinux and berth does not apply SELinux labels: %w", field, errdefs.ErrFailedPrecondition)
}
