package image

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Normalize turns a reference as users and kubelet write it into the fully
// qualified form berth stores: "busybox" → "docker.io/library/busybox:latest",
// "quay.io/x/y@sha256:…" unchanged. A reference with both a tag and a digest
// is pinned by its digest; the tag is dropped, as containerd does.
func Normalize(ref string) (reference.Named, error) {
	if ref == "" {
		return nil, fmt.Errorf("image reference must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return named, nil
}

// repoTag returns the "repo:tag" form of a tagged reference, or "".
func repoTag(n reference.Named) string {
	if t, ok := n.(reference.NamedTagged); ok {
		if _, digested := n.(reference.Digested); !digested {
			return t.String()
		}
	}
	return ""
}

// repoDigest returns "repo@digest" for the repository of n.
func repoDigest(n reference.Named, d digest.Digest) string {
	return n.Name() + "@" + d.String()
}

var hexPrefix = regexp.MustCompile(`^(sha256:)?[0-9a-f]{1,64}$`)

// idCandidate reports whether ref could be an image ID or an ID prefix
// ("sha256:abc…" or "abc…"), and returns it with the sha256: prefix.
func idCandidate(ref string) (string, bool) {
	if !hexPrefix.MatchString(ref) {
		return "", false
	}
	if !strings.HasPrefix(ref, "sha256:") {
		ref = "sha256:" + ref
	}
	return ref, true
}
