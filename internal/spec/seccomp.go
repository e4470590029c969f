package spec

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// applySeccomp sets the container's seccomp filter from its security
// context: RuntimeDefault (containerd's maintained default profile, built
// for the spec's capabilities), Localhost (a JSON profile on the host, by
// absolute path), or none for Unconfined, an unset profile, and privileged
// containers. The deprecated seccomp_profile_path ("runtime/default",
// "docker/default", "localhost/<path>", "unconfined") is honoured when the
// structured field is unset.
func applySeccomp(s *specs.Spec, sc *runtime.LinuxContainerSecurityContext) error {
	if sc.GetPrivileged() {
		return nil
	}
	kind, ref := seccompChoice(sc)
	switch kind {
	case runtime.SecurityProfile_Unconfined:
		return nil
	case runtime.SecurityProfile_RuntimeDefault:
		s.Linux.Seccomp = seccomp.DefaultProfile(s)
		return nil
	case runtime.SecurityProfile_Localhost:
		if !filepath.IsAbs(ref) {
			return fmt.Errorf("linux.security_context.seccomp.localhost_ref %q must be an absolute path: %w", ref, errdefs.ErrInvalidArgument)
		}
		b, err := readProfile(ref)
		if err != nil {
			return fmt.Errorf("linux.security_context.seccomp.localhost_ref: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		var profile specs.LinuxSeccomp
		if err := json.Unmarshal(b, &profile); err != nil {
			return fmt.Errorf("linux.security_context.seccomp.localhost_ref %s is not a seccomp profile: %v: %w", ref, err, errdefs.ErrInvalidArgument)
		}
		s.Linux.Seccomp = &profile
		return nil
	}
	return nil
}

func seccompChoice(sc *runtime.LinuxContainerSecurityContext) (runtime.SecurityProfile_ProfileType, string) {
	if p := sc.GetSeccomp(); p != nil {
		return p.GetProfileType(), p.GetLocalhostRef()
	}
	switch path := sc.GetSeccompProfilePath(); {
	case path == "runtime/default" || path == "docker/default":
		return runtime.SecurityProfile_RuntimeDefault, ""
	case strings.HasPrefix(path, "localhost/"):
		return runtime.SecurityProfile_Localhost, strings.TrimPrefix(path, "localhost/")
	default:
		return runtime.SecurityProfile_Unconfined, ""
	}
}

// maxProfileSize bounds a seccomp profile file (containerd's own default
// profile is about 20 KB).
const maxProfileSize = 4 << 20

// readProfile reads a Localhost seccomp profile: a regular file of bounded
// size, never a device or FIFO that could hang or flood the daemon.
func readProfile(path string) ([]byte, error) {
	// Non-blocking: opening a FIFO to read would wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxProfileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxProfileSize)
	}
	return io.ReadAll(io.LimitReader(f, maxProfileSize+1))
}
