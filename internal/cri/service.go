// Package cri implements the Kubernetes CRI v1 RuntimeService and
// ImageService on top of berth's store. One file per RPC; cross-cutting work
// (the recovery gate, error codes, logging) lives in interceptor.go.
//
// Every RPC not built yet answers codes.Unimplemented through the embedded
// Unimplemented*Server types.
package cri

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/keylock"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/netconf"
	"github.com/berth-cri/berth/internal/nri"
	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/sysinfo"
)

// images is what the CRI layer needs from the image service.
type images interface {
	Pull(ctx context.Context, ref string, auth *image.Auth) (image.Image, error)
	Get(ref string) (image.Image, error)
	List() []image.Image
	Remove(ctx context.Context, ref string) error
	MountRootfs(ctx context.Context, key, chainID, target string, uids, gids []specs.LinuxIDMapping) error
	MountView(ctx context.Context, key, chainID, target string, uids, gids []specs.LinuxIDMapping) error
	UnmountRootfs(ctx context.Context, key, target string) error
	RemoveSnapshot(ctx context.Context, key string) error
	SnapshotterName() string
	RootfsUsage(ctx context.Context, key string) (bytes, inodes uint64, err error)
}

// Options are what a Service is built from.
type Options struct {
	Config config.Config
	Store  *store.Store
	Images images
	Logger *slog.Logger
	// ProbeNetwork reports whether the pod network is usable; defaults to
	// netconf.Probe over the config's CNI directories.
	ProbeNetwork func() netconf.Result
	// MonitorBinary is the berth-monitor executable.
	MonitorBinary string
	// OOMScoreAdjFloor, when set, is the lowest oom_score_adj containers get
	// (the daemon's own, when it lacks CAP_SYS_RESOURCE).
	OOMScoreAdjFloor *int
	// CapabilityBounding is the daemon's capability bounding set.
	CapabilityBounding uint64
	// Network, Monitors and Namespaces replace the real CNI networking, pod
	// monitors and pod namespaces (tests); nil means the real ones.
	Network    podNetworks
	Monitors   monitors
	Namespaces podNamespaces
	// Metrics receives the service's series; nil records nothing.
	Metrics *metrics.Metrics
	// Tracer makes the service's spans; nil makes none.
	Tracer trace.Tracer
}

// Service serves CRI. It is safe for concurrent use.
type Service struct {
	runtime.UnimplementedRuntimeServiceServer
	runtime.UnimplementedImageServiceServer

	cfg           config.Config
	store         *store.Store
	images        images
	logger        *slog.Logger
	live          atomic.Pointer[liveConfig] // what a config reload changes (reload.go)
	cdiMu         sync.Mutex                 // one refresh and injection at a time
	cdi           *cdi.Cache
	fakeProbe     func() netconf.Result // Options.ProbeNetwork (tests)
	monitorBinary string
	oomFloor      *int
	capBounding   uint64
	cgroupDriver  string
	metrics       *metrics.Metrics
	tracer        trace.Tracer
	fakeNetwork   podNetworks // Options.Network (tests)
	monitors      monitors
	namespaces    podNamespaces
	stats         *stats.Reader
	streams       streaming.Server // nil until SetStreams
	exits         *exitWaiters
	watchPods     chan string // pods for Run to watch; buffered so a create never waits on Run
	retiring      retiringMonitors
	cleanups      bundleCleanups // files of removed containers (container_remove.go)
	nri           *nri.NRI       // nil: NRI disabled (nri.go)

	// Per-object serialization (serialize.go).
	podLocks, containerLocks keylock.Locks
	bg                       sync.WaitGroup // goroutines started by background
	events                   eventBroker    // GetContainerEvents subscribers

	mu      sync.Mutex
	podCIDR string // from UpdateRuntimeConfig; guarded by mu
}

// New builds a Service.
func New(opts Options) *Service {
	s := &Service{
		cfg:           opts.Config,
		store:         opts.Store,
		images:        opts.Images,
		logger:        opts.Logger,
		cdi:           newCDICache(opts.Config.CDI.SpecDirs),
		fakeProbe:     opts.ProbeNetwork,
		monitorBinary: opts.MonitorBinary,
		oomFloor:      opts.OOMScoreAdjFloor,
		capBounding:   opts.CapabilityBounding,
		cgroupDriver:  sysinfo.CgroupDriver(opts.Config.Runtime.CgroupDriver),
		metrics:       opts.Metrics,
		tracer:        opts.Tracer,
		fakeNetwork:   opts.Network,
		monitors:      opts.Monitors,
		namespaces:    opts.Namespaces,
		stats:         stats.NewReader(),
		exits:         &exitWaiters{waiters: map[string][]chan struct{}{}},
		watchPods:     make(chan string, 64),
	}
	if err := s.metrics.Register(stateCollector{s}); err != nil {
		s.logger.Error("register state metrics", "error", err)
	}
	s.live.Store(s.newLiveConfig(opts.Config))
	// Events come from where state is recorded: every durable change of
	// a record, and nothing else.
	s.store.Containers.Watch(s.containerChanged)
	s.store.Sandboxes.Watch(s.sandboxChanged)
	if s.tracer == nil {
		s.tracer = noop.NewTracerProvider().Tracer("")
	}
	if s.monitors == nil {
		s.monitors = realMonitors{}
	}
	if s.namespaces == nil {
		s.namespaces = realNamespaces{}
	}
	return s
}

// Register adds both CRI services to g.
func (s *Service) Register(g *grpc.Server) {
	runtime.RegisterRuntimeServiceServer(g, s)
	runtime.RegisterImageServiceServer(g, s)
}
