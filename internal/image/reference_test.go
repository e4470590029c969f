package image

import (
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestNormalize(t *testing.T) {
	const d = "sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"
	for in, want := range map[string]string{
		"busybox":                                 "docker.io/library/busybox:latest",
		"busybox:1.37":                            "docker.io/library/busybox:1.37",
		"library/busybox":                         "docker.io/library/busybox:latest",
		"docker.io/library/busybox":               "docker.io/library/busybox:latest",
		"registry.k8s.io/pause:3.9":               "registry.k8s.io/pause:3.9",
		"127.0.0.1:5000/x/y":                      "127.0.0.1:5000/x/y:latest",
		"gcr.io/a/b@" + d:                         "gcr.io/a/b@" + d,
		"gcr.io/a/b:tag@" + d:                     "gcr.io/a/b@" + d,
		"public.ecr.aws/docker/library/busybox:1": "public.ecr.aws/docker/library/busybox:1",
	} {
		n, err := Normalize(in)
		if err != nil {
			t.Errorf("Normalize(%q): %v", in, err)
			continue
		}
		if n.String() != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, n.String(), want)
		}
	}
	for _, bad := range []string{"", "Upper", "a b", "busybox:", "gcr.io/a@sha256:short"} {
		if _, err := Normalize(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Normalize(%q) err = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestRepoTagAndDigest(t *testing.T) {
	d := digest.FromString("m")
	n, _ := Normalize("busybox:1.37")
	if got := repoTag(n); got != "docker.io/library/busybox:1.37" {
		t.Errorf("repoTag = %q", got)
	}
	if got := repoDigest(n, d); got != "docker.io/library/busybox@"+d.String() {
		t.Errorf("repoDigest = %q", got)
	}
	pinned, _ := Normalize("busybox@" + d.String())
	if got := repoTag(pinned); got != "" {
		t.Errorf("repoTag of a digest ref = %q, want none", got)
	}
}

func TestIDCandidate(t *testing.T) {
	for in, want := range map[string]string{
		"abc123":      "sha256:abc123",
		"sha256:abc1": "sha256:abc1",
	} {
		if got, ok := idCandidate(in); !ok || got != want {
			t.Errorf("idCandidate(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"busybox", "sha256:", "abcg", "docker.io/x"} {
		if _, ok := idCandidate(in); ok {
			t.Errorf("idCandidate(%q) accepted", in)
		}
	}
}
