package image

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
)

// Storage is what the image stores hold on disk and how much of it nothing
// references: no image, container or pull in progress — what garbage
// collection will free, or what leaked.
type Storage struct {
	ContentBytes, UnreferencedContentBytes   int64
	SnapshotBytes, UnreferencedSnapshotBytes int64
	At                                       time.Time // when measured
}

// storageMaxAge bounds how often Storage walks the snapshots' files (each
// snapshot's size is a walk of its directory): scrapes in between get the
// last measurement.
const storageMaxAge = 30 * time.Second

type storageCache struct {
	mu   sync.Mutex
	last Storage
}

// Storage measures the stores, at most once per storageMaxAge.
func (s *Service) Storage(ctx context.Context) (Storage, error) {
	s.storage.mu.Lock()
	defer s.storage.mu.Unlock()
	if !s.storage.last.At.IsZero() && time.Since(s.storage.last.At) < storageMaxAge {
		return s.storage.last, nil
	}
	st, err := s.measureStorage(namespaces.WithNamespace(ctx, namespace))
	if err != nil {
		return Storage{}, err
	}
	s.storage.last = st
	return st, nil
}

// measureStorage marks what is referenced as containerd's collector does —
// from image records and leases, following the gc.ref labels of content
// and the parents of snapshots, plus container snapshots (gc.root) — and
// sums sizes.
func (s *Service) measureStorage(ctx context.Context) (Storage, error) {
	var queue []digest.Digest
	snapRoots := map[string]bool{}
	imgs, err := s.records.List(ctx)
	if err != nil {
		return Storage{}, err
	}
	for _, img := range imgs {
		queue = append(queue, img.Target.Digest)
	}
	leases, err := s.leases.List(ctx)
	if err != nil {
		return Storage{}, err
	}
	for _, l := range leases {
		res, err := s.leases.ListResources(ctx, l)
		if err != nil {
			continue // removed meanwhile
		}
		for _, r := range res {
			switch {
			case r.Type == "content":
				if d, err := digest.Parse(r.ID); err == nil {
					queue = append(queue, d)
				}
			case strings.HasPrefix(r.Type, "snapshots/"):
				snapRoots[r.ID] = true
			}
		}
	}
	referenced := map[digest.Digest]bool{}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if referenced[d] {
			continue
		}
		referenced[d] = true
		info, err := s.content.Info(ctx, d)
		if err != nil {
			continue // a child of another platform, never fetched
		}
		for k, v := range info.Labels {
			switch {
			case strings.HasPrefix(k, "containerd.io/gc.ref.content"):
				if c, err := digest.Parse(v); err == nil {
					queue = append(queue, c)
				}
			case strings.HasPrefix(k, "containerd.io/gc.ref.snapshot."):
				snapRoots[v] = true
			}
		}
	}

	var st Storage
	err = s.content.Walk(ctx, func(info content.Info) error {
		st.ContentBytes += info.Size
		if !referenced[info.Digest] {
			st.UnreferencedContentBytes += info.Size
		}
		return nil
	})
	if err != nil {
		return Storage{}, err
	}

	infos := map[string]snapshots.Info{}
	if err := s.snapshot.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		infos[info.Name] = info
		return nil
	}); err != nil {
		return Storage{}, err
	}
	held := map[string]bool{}
	mark := func(name string) {
		for name != "" && !held[name] {
			held[name] = true
			name = infos[name].Parent
		}
	}
	for name := range snapRoots {
		mark(name)
	}
	for name, info := range infos {
		if _, ok := info.Labels[labelGCRoot]; ok {
			mark(name)
		}
	}
	for name := range infos {
		u, err := s.snapshot.Usage(ctx, name)
		if err != nil {
			continue // removed meanwhile
		}
		st.SnapshotBytes += u.Size
		if !held[name] {
			st.UnreferencedSnapshotBytes += u.Size
		}
	}
	st.At = time.Now()
	return st, nil
}
