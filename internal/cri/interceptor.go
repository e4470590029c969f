package cri

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/internal/metrics"
)

// Gate holds calls back with Unavailable until start-up recovery has
// finished, so that no client sees a half-rebuilt view of pods and containers.
type Gate struct{ open atomic.Bool }

// Open lets calls through. It is called once, when recovery is done.
func (g *Gate) Open() { g.open.Store(true) }

// IsOpen reports whether recovery has finished.
func (g *Gate) IsOpen() bool { return g.open.Load() }

// Interceptors returns the unary and stream interceptors that every CRI call
// passes through: the recovery gate, the one place where errors become gRPC
// codes, one structured log line and the request metrics per call.
func Interceptors(logger *slog.Logger, gate *Gate, m *metrics.Metrics) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		var resp any
		err := gated(gate, func() (err error) {
			resp, err = handler(ctx, req)
			return err
		})
		err = ToStatus(err)
		callDone(ctx, logger, m, info.FullMethod, start, err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := ToStatus(gated(gate, func() error { return handler(srv, ss) }))
		callDone(ss.Context(), logger, m, info.FullMethod, start, err)
		return err
	}
	return unary, stream
}

func gated(gate *Gate, call func() error) error {
	if !gate.IsOpen() {
		return status.Error(codes.Unavailable, "berth is starting: recovery of pods and containers has not finished")
	}
	return call()
}

// ToStatus converts an error from a handler into a gRPC status error. Errors
// carrying an errdefs class get that class's code; context errors get
// Canceled or DeadlineExceeded; anything unclassified is berth's own failure
// and becomes Internal, never Unknown.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	// errdefs resolves an unclassified error to ErrUnknown, which errgrpc
	// would send as Unknown.
	if errdefs.Resolve(err) == errdefs.ErrUnknown && !errors.Is(err, errdefs.ErrUnknown) {
		return status.Error(codes.Internal, err.Error())
	}
	return errgrpc.ToGRPC(err)
}

// callDone records an answered call: its metrics, and the per-call log
// line. Calls that change state log at Info, reads (List*, *Status,
// Version, *Info, *Stats) at Debug; server-side failures log at Warn
// whatever the method.
func callDone(ctx context.Context, logger *slog.Logger, m *metrics.Metrics, fullMethod string, start time.Time, err error) {
	method, code, took := path.Base(fullMethod), status.Code(err), time.Since(start)
	m.Call(method, code, took)
	level := slog.LevelInfo
	if isRead(method) {
		level = slog.LevelDebug
	}
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelWarn
	}
	if !logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.Duration("duration", took),
		slog.String("code", code.String()),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	logger.LogAttrs(ctx, level, "cri call", attrs...)
}

func isRead(method string) bool {
	for _, p := range []string{"List", "Stream", "Version", "Status", "RuntimeConfig", "ImageFsInfo", "ContainerStats", "PodSandboxStats", "GetContainerEvents"} {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return strings.HasSuffix(method, "Status") || strings.HasSuffix(method, "Stats")
}
