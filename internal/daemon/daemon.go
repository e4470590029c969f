// Package daemon runs berth: it takes the root's lock, opens the store,
// serves CRI on the unix socket, runs start-up recovery behind the gate, and
// shuts down cleanly on cancellation, leaving containers running.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/cri"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/layout"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/nri"
	"github.com/berth-cri/berth/internal/sdnotify"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/sysinfo"
	"github.com/berth-cri/berth/internal/tracing"
	"github.com/berth-cri/berth/internal/version"
)

// imageGCInterval is how often unreferenced blobs and snapshots are
// collected besides right after each image removal.
const imageGCInterval = 10 * time.Minute

// Options are what Run serves with.
type Options struct {
	Config config.Config
	Logger *Logger
	// Load reads the config again (the file, then the flags given at
	// start) for a reload on SIGHUP; nil: no reloads.
	Load func() (config.Config, error)
	// Ready, when not nil, is closed once recovery has finished and calls
	// are being served.
	Ready chan<- struct{}
}

// Run serves CRI until ctx is cancelled, then stops accepting calls, lets
// in-flight calls finish (up to cfg.ShutdownTimeout), closes the database and
// returns.
func Run(ctx context.Context, o Options) (retErr error) {
	cfg, logger, ready := o.Config, o.Logger.Logger, o.Ready
	// SIGHUP asks for a reload; until the daemon can reload (after
	// recovery) one waits here rather than ending the process, as the
	// signal's default would.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	for _, dir := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.Address)} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
	}
	// Bundles live under the state directory, and the runtime reaches the
	// rootfs of a pod in a user namespace as the namespace's root (an
	// unprivileged host user): the way to the bundles must be searchable;
	// each bundle is closed to all but root, and that user's group.
	for _, dir := range []string{cfg.State, layout.State(cfg.State).Containers(), layout.State(cfg.State).Pauses()} {
		if err := os.Chmod(dir, 0o711); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("make state directory searchable: %w", err)
		}
	}
	monitorBinary, err := findMonitor(cfg.Runtime.MonitorPath)
	if err != nil {
		return err
	}
	oomFloor, err := sysinfo.OOMScoreAdjFloor()
	if err != nil {
		return fmt.Errorf("read own oom_score_adj: %w", err)
	}
	capBounding, err := sysinfo.CapabilityBounding()
	if err != nil {
		return fmt.Errorf("read capability bounding set: %w", err)
	}
	if oomFloor != nil {
		logger.Info("no CAP_SYS_RESOURCE: container oom_score_adj below the daemon's own is raised to it", "floor", *oomFloor)
	}
	lock, err := lockRoot(cfg.Root)
	if err != nil {
		return err
	}
	defer lock.release()

	st, err := store.Open(filepath.Join(cfg.Root, "berth.db"))
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("close database: %w", err))
		}
	}()

	m := metrics.New()
	initial, err := tracing.Setup(ctx, cfg.Tracing)
	if err != nil {
		return err
	}
	traces := tracing.NewSwitch(initial)
	defer func() {
		// What is buffered goes out; a collector that is gone costs at
		// most this long.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := traces.Current().Shutdown(sctx); err != nil {
			logger.Warn("flush traces", "error", err)
		}
	}()
	if initial.On() {
		logger.Info("tracing CRI calls", "endpoint", initial.Endpoint())
	}
	images, err := image.Open(ctx, image.Options{
		Root:                   cfg.Root,
		HostsDir:               cfg.Registry.ConfigPath,
		Snapshotter:            cfg.Image.Snapshotter,
		MaxConcurrentDownloads: cfg.Image.MaxConcurrentDownloads,
		ProgressTimeout:        cfg.Image.PullProgressTimeout.Duration,
		Pinned:                 []string{cfg.Image.SandboxImage},
		Logger:                 logger,
		Metrics:                m,
		Tracer:                 traces.Tracer(),
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := images.Close(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("close image stores: %w", err))
		}
	}()

	lis, err := listenUnix(cfg.Address)
	if err != nil {
		return err
	}
	gate := &cri.Gate{}
	unary, stream := cri.Interceptors(logger, gate, m)
	serverOpts := []grpc.ServerOption{traces.ServerOption(), grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream),
		// Calls run on long-lived workers, whose stacks have grown already,
		// rather than each on a new goroutine that grows its stack by
		// copying: a tenth of the CPU of a small call.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0)))}
	server := grpc.NewServer(serverOpts...)
	if cfg.CNI.DefaultNetwork {
		wrote, err := network.WriteDefault(cfg.CNI.ConfDir, "")
		if err != nil {
			return fmt.Errorf("write default CNI network: %w", err)
		}
		if wrote {
			logger.Info("no CNI network configured: wrote berth's default bridge network",
				"file", filepath.Join(cfg.CNI.ConfDir, network.DefaultFile), "subnet", network.DefaultSubnet)
		}
	}
	svc := cri.New(cri.Options{
		Config:             cfg,
		Store:              st,
		Images:             images,
		Logger:             logger,
		MonitorBinary:      monitorBinary,
		OOMScoreAdjFloor:   oomFloor,
		CapabilityBounding: capBounding,
		Metrics:            m,
		Tracer:             traces.Tracer(),
	})
	svc.Register(server)
	plugins, err := nri.New(nri.Config{
		Enable: cfg.NRI.Enable, SocketPath: cfg.NRI.SocketPath,
		PluginPath: cfg.NRI.PluginPath, PluginConfigPath: cfg.NRI.PluginConfigPath,
		RegistrationTimeout: cfg.NRI.RegistrationTimeout.Duration, RequestTimeout: cfg.NRI.RequestTimeout.Duration,
	}, cri.RuntimeName, version.String(), svc.NRIHost(), logger)
	if err != nil {
		return err
	}
	svc.SetNRI(plugins)
	if stats := plugins.Stats(); stats != nil {
		if err := m.Register(stats); err != nil {
			return fmt.Errorf("nri metrics: %w", err)
		}
	}

	if err := m.Register(storageCollector{images: images, root: cfg.Root, logger: logger}); err != nil {
		return fmt.Errorf("storage metrics: %w", err)
	}
	metricsEndpoint := &endpoint{name: "metrics", path: "/metrics", handler: metricsMux(m), logger: o.Logger}
	debugEndpoint := &endpoint{name: "profiles", path: "/debug/pprof/", handler: pprofMux(), logger: o.Logger, onServe: sampleHeap}
	for _, e := range []struct {
		ep   *endpoint
		key  string
		addr string
	}{{metricsEndpoint, "metrics.address", metricsAddress(cfg.Metrics.Address)}, {debugEndpoint, "debug.address", cfg.Debug.Address}} {
		p, err := e.ep.prepare(e.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", e.key, err)
		}
		e.ep.commit(p)
		defer e.ep.close()
	}

	streamLis, err := net.Listen("tcp", cfg.Stream.Address)
	if err != nil {
		return fmt.Errorf("streaming server: %w", err)
	}
	streamCfg := streaming.DefaultConfig
	streamCfg.Addr = streamLis.Addr().String()
	if cfg.Stream.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Stream.TLSCertFile, cfg.Stream.TLSKeyFile)
		if err != nil {
			streamLis.Close()
			return fmt.Errorf("streaming server TLS: %w", err)
		}
		// The server's URLs say https once TLSConfig is set.
		streamCfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		streamLis = tls.NewListener(streamLis, streamCfg.TLSConfig)
	}
	streams, err := streaming.NewServer(streamCfg, svc.StreamRuntime())
	if err != nil {
		streamLis.Close()
		return fmt.Errorf("streaming server: %w", err)
	}
	svc.SetStreams(streams)
	go http.Serve(streamLis, streams)
	defer streamLis.Close()

	// Background work lives as long as serving does and is done before the
	// stores close.
	bg, stopBackground := context.WithCancel(ctx)
	var background sync.WaitGroup
	defer func() {
		stopBackground()
		background.Wait()
	}()
	background.Go(func() { images.CollectEvery(bg, imageGCInterval) })
	background.Go(func() { images.ReleasePullMemory(bg) })
	background.Go(func() { svc.Run(bg) })

	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(lis) }()
	logger.Info("serving CRI", "address", cfg.Address, "root", cfg.Root, "state", cfg.State, "streaming", streamCfg.Addr)

	// Recovery: the store's indexes and the image index were rebuilt by
	// their Open; pods and containers are reconciled with their monitors.
	if err := svc.Recover(ctx); err != nil {
		server.Stop()
		return fmt.Errorf("recover: %w", err)
	}
	if err := svc.StartNRI(); err != nil {
		server.Stop()
		return fmt.Errorf("nri.socket_path: %w", err)
	}
	defer plugins.Stop()
	gate.Open()
	logger.Info("recovery finished; ready",
		"sandboxes", st.Sandboxes.Len(), "containers", st.Containers.Len())
	if ready != nil {
		close(ready)
	}
	if err := sdnotify.Send("READY=1"); err != nil {
		logger.Warn("tell systemd berth is ready", "error", err)
	}
	_ = os.Remove(ReloadResultFile(cfg.State)) // a previous daemon's generations
	if o.Load != nil {
		r := &reloader{cfg: cfg, load: o.Load, logger: o.Logger, svc: svc, images: images, tracing: traces,
			metrics: metricsEndpoint, debug: debugEndpoint, state: cfg.State}
		stopReloads := make(chan struct{})
		defer close(stopReloads)
		go r.watch(hup, stopReloads)
	}
	if err := atomicfile.Write(PidFile(cfg.State), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	defer os.Remove(PidFile(cfg.State))

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve %s: %w", cfg.Address, err)
	case <-ctx.Done():
	}
	_ = sdnotify.Send("STOPPING=1")
	logger.Info("shutting down: finishing in-flight calls; containers keep running",
		"timeout", cfg.ShutdownTimeout.Duration)
	svc.EndEventStreams() // they never end by themselves
	stopGracefully(server, cfg.ShutdownTimeout.Duration, logger)
	return nil
}

// findMonitor locates the berth-monitor binary: the configured path, else
// the one next to this executable, else PATH.
func findMonitor(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berth-monitor")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("berth-monitor")
	if err != nil {
		return "", fmt.Errorf("berth-monitor not found next to berth or in PATH; set runtime.monitor_path")
	}
	return p, nil
}

// stopGracefully stops accepting connections and waits for in-flight calls,
// then cuts off whatever is still running after timeout.
func stopGracefully(server *grpc.Server, timeout time.Duration, logger *slog.Logger) {
	done := make(chan struct{})
	go func() {
		server.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		logger.Warn("in-flight calls did not finish in time; stopping hard", "timeout", timeout)
		server.Stop()
		<-done
	}
}
