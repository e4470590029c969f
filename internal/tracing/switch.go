package tracing

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Switch is the daemon's tracing as a config reload can change it: a
// tracer and a gRPC stats handler that follow whatever Tracing is current.
// Off, both do nothing beyond one atomic load.
type Switch struct {
	current atomic.Pointer[state]
}

type state struct {
	t       *Tracing
	tracer  trace.Tracer
	handler stats.Handler // nil when off
}

// NewSwitch starts with t.
func NewSwitch(t *Tracing) *Switch {
	s := &Switch{}
	s.Set(t)
	return s
}

// Set makes t current and returns the one it replaces (for the caller to
// flush and shut down).
func (s *Switch) Set(t *Tracing) *Tracing {
	old := s.current.Swap(&state{t: t, tracer: t.Tracer(), handler: t.serverHandler()})
	if old == nil {
		return nil
	}
	return old.t
}

// Current is the Tracing in force.
func (s *Switch) Current() *Tracing { return s.current.Load().t }

// Tracer makes spans with the current provider.
func (s *Switch) Tracer() trace.Tracer { return switchTracer{s: s} }

type switchTracer struct {
	embedded.Tracer
	s *Switch
}

func (t switchTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return t.s.current.Load().tracer.Start(ctx, name, opts...)
}

// ServerOption instruments the CRI server through the switch: a call is
// traced when tracing is on as it begins, by the handler that tagged it.
func (s *Switch) ServerOption() grpc.ServerOption { return grpc.StatsHandler(switchHandler{s: s}) }

type switchHandler struct{ s *Switch }

// handlerKey carries, in a call's context, the handler that tagged it.
type handlerKey struct{}

func (h switchHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	inner := h.s.current.Load().handler
	if inner == nil {
		return ctx
	}
	return context.WithValue(inner.TagRPC(ctx, info), handlerKey{}, inner)
}

func (h switchHandler) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	if inner, ok := ctx.Value(handlerKey{}).(stats.Handler); ok {
		inner.HandleRPC(ctx, rs)
	}
}

func (switchHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (switchHandler) HandleConn(context.Context, stats.ConnStats) {}
