package image

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image as CRI sees it: the config digest is its ID, and every
// reference that resolves to it contributes a repo tag and a repo digest.
type Image struct {
	ID          string
	RepoTags    []string
	RepoDigests []string
	// Size is the compressed size of the manifest, config and layers, as
	// containerd reports it.
	Size    uint64
	Config  ocispec.Image
	ChainID digest.Digest
	Pinned  bool
}

// record is one stored reference (a containerd image record: a name and the
// manifest or index it points at) with the facts berth derived from it.
type record struct {
	name    reference.Named
	target  digest.Digest // manifest or index digest: the repo digest
	id      string        // config digest for the host platform
	size    uint64
	config  ocispec.Image
	chainID digest.Digest
}

// index is the in-memory view of every stored reference, grouped by image ID
// on read. Safe for concurrent use.
type index struct {
	mu      sync.RWMutex
	records map[string]record // keyed by the normalized name; guarded by mu
	pinned  map[string]bool   // normalized names of pinned images (the sandbox image)
}

func newIndex(pinned []string) *index {
	x := &index{records: map[string]record{}, pinned: map[string]bool{}}
	for _, p := range pinned {
		if n, err := Normalize(p); err == nil {
			x.pinned[n.String()] = true
		}
	}
	return x
}

func (x *index) put(r record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.records[r.name.String()] = r
}

func (x *index) remove(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.records, name)
}

// list returns every image, ordered by ID.
func (x *index) list() []Image {
	x.mu.RLock()
	defer x.mu.RUnlock()
	byID := map[string][]record{}
	for _, r := range x.records {
		byID[r.id] = append(byID[r.id], r)
	}
	out := make([]Image, 0, len(byID))
	for _, rs := range byID {
		out = append(out, x.group(rs))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// group merges the records of one image. Callers hold mu.
func (x *index) group(rs []record) Image {
	sort.Slice(rs, func(i, j int) bool { return rs[i].name.String() < rs[j].name.String() })
	img := Image{ID: rs[0].id, Config: rs[0].config, ChainID: rs[0].chainID}
	tags, digests := map[string]bool{}, map[string]bool{}
	for _, r := range rs {
		if t := repoTag(r.name); t != "" && !tags[t] {
			tags[t] = true
			img.RepoTags = append(img.RepoTags, t)
		}
		if d := repoDigest(r.name, r.target); !digests[d] {
			digests[d] = true
			img.RepoDigests = append(img.RepoDigests, d)
		}
		if r.size > img.Size {
			img.Size = r.size
		}
		if x.pinned[r.name.String()] {
			img.Pinned = true
		}
	}
	return img
}

// names returns the stored names of the image with this ID.
func (x *index) names(id string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []string
	for name, r := range x.records {
		if r.id == id {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// lookup finds the image ref names: an image ID or unique ID prefix, a
// stored reference ("busybox", "docker.io/library/busybox:1.37"), or a repo
// digest ("repo@sha256:…") of any stored reference. NotFound when nothing
// matches; InvalidArgument for an ambiguous ID prefix or a malformed ref.
func (x *index) lookup(ref string) (Image, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	id, isID := idCandidate(ref)
	if isID {
		img, err := x.byIDPrefix(id)
		if err == nil || !errdefs.IsNotFound(err) {
			return img, err
		}
		// A short hex string may also be a repository name ("abc" → docker.io/library/abc).
	}
	named, err := Normalize(ref)
	if err != nil {
		if isID {
			// A full 64-hex ID is not a valid repository name: it is simply unknown.
			return Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
		}
		return Image{}, err
	}
	id = ""
	if r, ok := x.records[named.String()]; ok {
		id = r.id
	} else if d, ok := named.(reference.Digested); ok {
		for _, r := range x.records {
			if r.name.Name() == named.Name() && r.target == d.Digest() {
				id = r.id
				break
			}
		}
	}
	if id == "" {
		return Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	return x.byIDLocked(id), nil
}

func (x *index) byIDPrefix(prefix string) (Image, error) {
	var found string
	for _, r := range x.records {
		if !strings.HasPrefix(r.id, prefix) || r.id == found {
			continue
		}
		if found != "" {
			return Image{}, fmt.Errorf("image id prefix %q is ambiguous: it matches %s and %s: %w",
				prefix, found, r.id, errdefs.ErrInvalidArgument)
		}
		found = r.id
	}
	if found == "" {
		return Image{}, fmt.Errorf("image %q: %w", prefix, errdefs.ErrNotFound)
	}
	return x.byIDLocked(found), nil
}

func (x *index) byIDLocked(id string) Image {
	var rs []record
	for _, r := range x.records {
		if r.id == id {
			rs = append(rs, r)
		}
	}
	return x.group(rs)
}
