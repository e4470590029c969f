package image

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func rec(t *testing.T, name string, target digest.Digest, id string) record {
	t.Helper()
	n, err := Normalize(name)
	if err != nil {
		t.Fatal(err)
	}
	return record{name: n, target: target, id: id, size: 100}
}

func TestIndexGroupsReferencesByID(t *testing.T) {
	idA := "sha256:aaaa" + strings.Repeat("1", 60)
	idB := "sha256:aaab" + strings.Repeat("2", 60)
	mA, mB := digest.FromString("manifest-a"), digest.FromString("manifest-b")
	x := newIndex([]string{"registry.k8s.io/pause:3.9"})
	x.put(rec(t, "gcr.io/x/tags:1", mA, idA))
	x.put(rec(t, "gcr.io/x/tags:2", mA, idA))
	x.put(rec(t, "registry.k8s.io/pause:3.9", mB, idB))
	x.put(rec(t, "k8s.gcr.io/pause:3.9", mB, idB))
	x.put(rec(t, "k8s.gcr.io/pause@"+mB.String(), mB, idB))

	list := x.list()
	if len(list) != 2 {
		t.Fatalf("list = %+v, want 2 images", list)
	}
	a := list[0]
	if strings.Join(a.RepoTags, ",") != "gcr.io/x/tags:1,gcr.io/x/tags:2" ||
		strings.Join(a.RepoDigests, ",") != "gcr.io/x/tags@"+mA.String() || a.Pinned {
		t.Errorf("image A = %+v", a)
	}
	b := list[1]
	if len(b.RepoTags) != 2 || len(b.RepoDigests) != 2 || !b.Pinned {
		t.Errorf("image B (one image from two registries, digest ref deduplicated) = %+v", b)
	}

	for ref, wantID := range map[string]string{
		idA:                                    idA,
		"aaaa":                                 idA,
		"sha256:aaab":                          idB,
		"gcr.io/x/tags:2":                      idA,
		"k8s.gcr.io/pause@" + mB.String():      idB,
		"gcr.io/x/tags@" + mA.String():         idA, // a repo digest derived from a tag record
		"registry.k8s.io/pause:3.9":            idB,
		"registry.k8s.io/pause@" + mB.String(): idB,
	} {
		img, err := x.lookup(ref)
		if err != nil || img.ID != wantID {
			t.Errorf("lookup(%q) = %q, %v; want %q", ref, img.ID, err, wantID)
		}
	}
	if _, err := x.lookup("aaa"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ambiguous prefix: err = %v", err)
	}
	for _, ref := range []string{"gcr.io/x/tags:3", "busybox", "gcr.io/x/tags@" + mB.String(), "ffff", strings.Repeat("0", 64)} {
		if _, err := x.lookup(ref); !errdefs.IsNotFound(err) {
			t.Errorf("lookup(%q) err = %v, want NotFound", ref, err)
		}
	}
	if _, err := x.lookup("Bad Ref"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("malformed ref: err = %v", err)
	}

	if got := x.names(idA); strings.Join(got, ",") != "gcr.io/x/tags:1,gcr.io/x/tags:2" {
		t.Errorf("names(A) = %v", got)
	}
	x.remove("gcr.io/x/tags:1")
	if img, _ := x.lookup(idA); strings.Join(img.RepoTags, ",") != "gcr.io/x/tags:2" {
		t.Errorf("after removing one reference: %+v", img)
	}
}
