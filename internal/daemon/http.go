package daemon

import (
	"context"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/berth-cri/berth/internal/metrics"
)

// serveHTTP serves handler on addr until stop is called. It returns the
// address it listens on (port 0 picks one).
func serveHTTP(addr string, handler http.Handler) (string, func(), error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(lis)
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return lis.Addr().String(), stop, nil
}

// metricsAddress binds an address without a host (":9345") to loopback:
// metrics are exposed beyond the node only when asked for by name.
func metricsAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

func metricsMux(m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	return mux
}

// heapSampleRate is the Go runtime's default memory profiling rate: one
// sample per 512 kB allocated.
const heapSampleRate = 512 * 1024

// sampleHeap turns the heap profile's sampling on (berth's main turns it
// off: its hash table and stacks are half a megabyte of a daemon that
// serves no profiles unless debug.address is set). Heap profiles cover
// what is allocated from then on.
func sampleHeap() {
	if runtime.MemProfileRate == 0 {
		runtime.MemProfileRate = heapSampleRate
	}
}

// pprofMux serves Go's profiles, on its own mux so nothing else reaches
// them (net/http/pprof registers on the default mux, which berth never
// serves).
func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
