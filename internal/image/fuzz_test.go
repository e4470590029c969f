package image

import (
	"regexp"
	"testing"

	"github.com/containerd/errdefs"
)

// FuzzNormalize parses image references as kubelet and crictl send them.
// Normalize and idCandidate must never panic; Normalize refuses only with
// InvalidArgument, and what it returns is a fixed point: normalizing its
// String() again gives the same string, the key berth stores it under.
func FuzzNormalize(f *testing.F) {
	const d = "sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"
	for _, s := range []string{
		"", "busybox", "busybox:1.37", "library/busybox", "docker.io/library/busybox:latest",
		"index.docker.io/busybox", "registry-1.docker.io/x/y", "localhost/x", "localhost:5000/a/b:c",
		"127.0.0.1:5000/x/y", "[::1]:5000/x:y", "registry.k8s.io/pause:3.9", "gcr.io/a/b@" + d,
		"gcr.io/a/b:tag@" + d, "busybox@" + d, "docker.io/x@sha512:" + d[7:] + d[7:],
		"public.ecr.aws/docker/library/busybox:1", "Upper", "a b", "busybox:", "gcr.io/a@sha256:short",
		d, d[7:], d[7:17], "sha256:", "abcg", "a/b/c/d/e:f_g.h-i", "a__b", "-a", "a:b:c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if id, ok := idCandidate(ref); ok && !idForm.MatchString(id) {
			t.Errorf("idCandidate(%q) = %q, not sha256:<1 to 64 hex>", ref, id)
		}
		n, err := Normalize(ref)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("Normalize(%q): %v, want InvalidArgument", ref, err)
			}
			return
		}
		s := n.String()
		again, err := Normalize(s)
		if err != nil {
			t.Fatalf("Normalize(%q) = %q, which does not normalize: %v", ref, s, err)
		}
		if again.String() != s {
			t.Errorf("Normalize(%q) = %q, but Normalize(%q) = %q", ref, s, s, again.String())
		}
		if tag := repoTag(n); tag != "" && tag != s {
			t.Errorf("repoTag(%q) = %q, want the reference itself", s, tag)
		}
	})
}

var idForm = regexp.MustCompile(`^sha256:[0-9a-f]{1,64}$`)
