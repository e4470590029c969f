// Package image is berth's image service: pull from OCI registries through
// containerd's resolver (hosts.toml mirrors, auth), content-addressed blobs
// in containerd's local content store, layers unpacked into overlayfs
// snapshots as they arrive, and garbage collection, all in-process on
// containerd v2's packages with no containerd daemon.
//
// Every stored reference is a containerd image record named by its
// normalized reference; the CRI view (an image ID with repo tags and repo
// digests) is derived from those records by the in-memory index.
package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/berth-cri/berth/internal/metrics"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/diff/apply"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// namespace is the containerd metadata namespace berth keeps everything in.
const namespace = "berth"

// labelPull marks the lease that protects an in-flight pull. No pull
// survives a daemon restart, so recovery deletes every such lease.
const labelPull = "berth.io/pull"

// Options configure the image service.
type Options struct {
	// Root holds image-meta.db, content/ and snapshots/<snapshotter>/.
	Root string
	// HostsDir is registry.config_path: <dir>/<host>/hosts.toml.
	HostsDir string
	// Snapshotter is "overlayfs" or "native".
	Snapshotter string
	// MaxConcurrentDownloads bounds parallel blob fetches per pull.
	MaxConcurrentDownloads int
	// ProgressTimeout aborts a pull that receives no bytes for this long.
	ProgressTimeout time.Duration
	// Pinned references are reported as pinned (the sandbox image).
	Pinned []string
	Logger *slog.Logger
	// Metrics receives the pull series; nil records nothing.
	Metrics *metrics.Metrics
	// Tracer makes a span per pull; nil makes none.
	Tracer trace.Tracer
}

// Service pulls, lists and removes images. Safe for concurrent use.
type Service struct {
	opts         Options
	pullSettings atomic.Pointer[PullSettings] // a config reload changes them
	storage      storageCache
	bolt         *bolt.DB
	db           *metadata.DB
	content      content.Store
	snapshot     snapshots.Snapshotter
	records      images.Store
	leases       leases.Manager
	applier      diff.Applier
	platform     platforms.MatchComparer
	index        *index
	pulls        pullGroup
	// collectSoon asks CollectEvery for a collection shortly: a removed
	// container's snapshot leaves its directories to the next one, which
	// must not be a caller's (RemoveImage's).
	collectSoon chan struct{}
	// pullsRunning counts pulls in progress; the last one to finish asks
	// ReleasePullMemory (pullsDone) to return the heap they used.
	pullsRunning atomic.Int32
	pullsDone    chan struct{}

	// mu serialises changes to the stored references (registering a pull,
	// removing an image) so the index and the records never disagree.
	mu sync.Mutex
}

// PullSettings are the pull options a config reload changes; a pull uses
// the ones in force when it starts.
type PullSettings struct {
	HostsDir               string
	MaxConcurrentDownloads int
	ProgressTimeout        time.Duration
}

// SetPullSettings applies new pull options to pulls that start from now.
func (s *Service) SetPullSettings(p PullSettings) {
	if p.MaxConcurrentDownloads <= 0 {
		p.MaxConcurrentDownloads = 3
	}
	s.pullSettings.Store(&p)
}

// Open opens (creating if needed) the image stores under opts.Root,
// deletes what interrupted pulls left behind, and loads every stored
// reference.
func Open(ctx context.Context, opts Options) (*Service, error) {
	ctx = namespaces.WithNamespace(ctx, namespace)
	if opts.MaxConcurrentDownloads <= 0 {
		opts.MaxConcurrentDownloads = 3
	}
	// containerd's mount package mounts layers while unpacking them, and the
	// idmapped lower layers of a rootfs in a user namespace, on temporary
	// directories. They go under the root (the package's setting is global:
	// one location per process), and what a crash left there is unmounted.
	if err := mount.SetTempMountLocation(filepath.Join(opts.Root, "tmpmounts")); err != nil {
		return nil, fmt.Errorf("temporary mount directory: %w", err)
	}
	if warnings, err := mount.CleanupTempMounts(0); err != nil || len(warnings) > 0 {
		return nil, fmt.Errorf("unmount what a crash left in the temporary mount directory: %w", errors.Join(append(warnings, err)...))
	}
	cs, err := local.NewStore(filepath.Join(opts.Root, "content"))
	if err != nil {
		return nil, fmt.Errorf("open content store: %w", err)
	}
	snRoot := filepath.Join(opts.Root, "snapshots", opts.Snapshotter)
	if err := os.MkdirAll(snRoot, 0o700); err != nil {
		return nil, err
	}
	var sn snapshots.Snapshotter
	switch opts.Snapshotter {
	case "overlayfs":
		// WithRemapIDs: rootfs snapshots of pods in user namespaces carry
		// ID-mapping labels; their lower layers are mounted idmapped.
		sn, err = overlay.NewSnapshotter(snRoot, overlay.WithRemapIDs)
	case "native":
		sn, err = native.NewSnapshotter(snRoot)
	default:
		return nil, fmt.Errorf("snapshotter %q: want overlayfs or native", opts.Snapshotter)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s snapshotter: %w", opts.Snapshotter, err)
	}
	// A crash between a snapshot directory's creation and the commit of
	// its record leaves a directory under an ID the snapshotter hands out
	// again: remove such directories before anything is prepared (a new
	// store has nothing to clean: NotFound).
	if cleaner, ok := sn.(snapshots.Cleaner); ok {
		if err := cleaner.Cleanup(ctx); err != nil && !errdefs.IsNotFound(err) {
			sn.Close()
			return nil, fmt.Errorf("remove snapshot directories a crash left: %w", err)
		}
	}
	bdb, err := bolt.Open(filepath.Join(opts.Root, "image-meta.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		sn.Close()
		return nil, fmt.Errorf("open image metadata: %w", err)
	}
	db := metadata.NewDB(bdb, cs, map[string]snapshots.Snapshotter{opts.Snapshotter: sn})
	if err := db.Init(ctx); err != nil {
		bdb.Close()
		sn.Close()
		return nil, fmt.Errorf("init image metadata: %w", err)
	}
	s := &Service{
		collectSoon: make(chan struct{}, 1),
		pullsDone:   make(chan struct{}, 1),
		opts:        opts,
		bolt:        bdb,
		db:          db,
		content:     db.ContentStore(),
		snapshot:    db.Snapshotter(opts.Snapshotter),
		records:     metadata.NewImageStore(db),
		leases:      metadata.NewLeaseManager(db),
		platform:    platforms.Default(),
		index:       newIndex(opts.Pinned),
		pulls:       pullGroup{calls: map[string]*pullCall{}},
	}
	s.pullSettings.Store(&PullSettings{HostsDir: opts.HostsDir, MaxConcurrentDownloads: opts.MaxConcurrentDownloads, ProgressTimeout: opts.ProgressTimeout})
	s.applier = apply.NewFileSystemApplier(s.content)
	if err := s.recover(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the stores.
func (s *Service) Close() error {
	return errors.Join(s.bolt.Close(), s.snapshot.Close())
}

// recover drops the leases of pulls a previous run did not finish, collects
// what they had fetched, and loads every stored reference into the index.
func (s *Service) recover(ctx context.Context) error {
	stale, err := s.leases.List(ctx, "labels.\""+labelPull+"\"")
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	for _, l := range stale {
		if err := s.leases.Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete lease of interrupted pull %s: %w", l.ID, err)
		}
	}
	if len(stale) > 0 {
		s.opts.Logger.Info("dropped leases of interrupted pulls", "count", len(stale))
	}
	if _, err := s.db.GarbageCollect(ctx); err != nil {
		return fmt.Errorf("garbage collect: %w", err)
	}
	stored, err := s.records.List(ctx)
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	for _, img := range stored {
		named, err := Normalize(img.Name)
		if err != nil {
			s.opts.Logger.Warn("skipping image record with an invalid name", "name", img.Name, "error", err)
			continue
		}
		r, err := s.describe(ctx, named, img.Target)
		if err != nil {
			s.opts.Logger.Warn("skipping unreadable image record", "name", img.Name, "error", err)
			continue
		}
		s.index.put(r)
	}
	return nil
}

// describe reads what CRI needs about the image target points at: its
// config (the ID), chain ID and size, for the host platform.
func (s *Service) describe(ctx context.Context, named reference.Named, target ocispec.Descriptor) (record, error) {
	img := images.Image{Name: named.String(), Target: target}
	cfgDesc, err := img.Config(ctx, s.content, s.platform)
	if err != nil {
		return record{}, fmt.Errorf("image config: %w", err)
	}
	blob, err := content.ReadBlob(ctx, s.content, cfgDesc)
	if err != nil {
		return record{}, fmt.Errorf("read image config: %w", err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return record{}, fmt.Errorf("decode image config %s: %w", cfgDesc.Digest, err)
	}
	size, err := img.Size(ctx, s.content, s.platform)
	if err != nil {
		return record{}, fmt.Errorf("image size: %w", err)
	}
	return record{
		name:    named,
		target:  target.Digest,
		id:      cfgDesc.Digest.String(),
		size:    uint64(size),
		config:  cfg,
		chainID: identity.ChainID(cfg.RootFS.DiffIDs),
	}, nil
}

// List returns every image.
func (s *Service) List() []Image { return s.index.list() }

// Get finds an image by ID, ID prefix, reference or repo digest.
func (s *Service) Get(ref string) (Image, error) { return s.index.lookup(ref) }

// Remove deletes every reference of the image ref resolves to and collects
// its blobs and snapshots. An unknown image is not an error: removal is
// idempotent.
func (s *Service) Remove(ctx context.Context, ref string) error {
	ctx = namespaces.WithNamespace(ctx, namespace)
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.index.lookup(ref)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, name := range s.index.names(img.ID) {
		if err := s.records.Delete(ctx, name); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete image reference %s: %w", name, err)
		}
		s.index.remove(name)
	}
	if _, err := s.db.GarbageCollect(ctx); err != nil {
		return fmt.Errorf("garbage collect after removing %s: %w", img.ID, err)
	}
	return nil
}

// register stores the reference and adds it to the index.
func (s *Service) register(ctx context.Context, r record, target ocispec.Descriptor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img := images.Image{Name: r.name.String(), Target: target}
	if _, err := s.records.Create(ctx, img); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("store image reference %s: %w", img.Name, err)
		}
		if _, err := s.records.Update(ctx, img, "target"); err != nil {
			return fmt.Errorf("update image reference %s: %w", img.Name, err)
		}
	}
	s.index.put(r)
	return nil
}

// pullMemoryDelay is how long no pull may run before ReleasePullMemory
// returns their heap: a burst of pulls (a pod's images) reuses it, and the
// calls that follow a pull (status, create) do not meet a collection.
const pullMemoryDelay = 5 * time.Second

// ReleasePullMemory returns the heap that pulls used (decompressors'
// windows, unpack buffers: megabytes a node daemon would otherwise hold
// until the runtime's scavenger gets to them, minutes later) to the kernel
// once no pull has run for pullMemoryDelay, until ctx ends. It costs two
// garbage collections per burst of pulls.
func (s *Service) ReleasePullMemory(ctx context.Context) {
	releaseWhenQuiet(ctx, s.pullsDone, func() bool { return s.pullsRunning.Load() > 0 }, pullMemoryDelay, releaseHeap)
}

// releaseHeap returns all free heap to the kernel. Pooled objects (the
// decompressors' and buffers' sync.Pools) outlive one collection in the
// pools' victim cache; the second frees them: 0.2 MB after a pull.
func releaseHeap() {
	runtime.GC()
	debug.FreeOSMemory()
}

// releaseWhenQuiet calls release once delay has passed since the last
// signal on done, unless running says work has started again meanwhile
// (its own end will signal done), until ctx ends.
func releaseWhenQuiet(ctx context.Context, done <-chan struct{}, running func() bool, delay time.Duration, release func()) {
	quiet := time.NewTimer(delay)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			quiet.Reset(delay)
		case <-quiet.C:
			if !running() {
				release()
			}
		}
	}
}

// GarbageCollect deletes blobs and snapshots nothing refers to.
func (s *Service) GarbageCollect(ctx context.Context) error {
	_, err := s.db.GarbageCollect(namespaces.WithNamespace(ctx, namespace))
	return err
}

// collectDelay gathers the removals of a burst (a pod's containers) into
// one collection.
const collectDelay = 100 * time.Millisecond

// CollectEvery garbage-collects until ctx ends: shortly after a snapshot
// is removed (collectSoon), and every interval, which catches what a
// failed or interrupted operation left.
func (s *Service) CollectEvery(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.collectSoon:
			select {
			case <-ctx.Done():
				return
			case <-time.After(collectDelay):
			}
		case <-tick.C:
		}
		if err := s.GarbageCollect(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("scheduled image garbage collection", "error", err)
		}
	}
}
