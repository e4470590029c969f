package e2eenv

import (
	"context"
	"net"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// OTLPReceiver is an OTLP/gRPC trace collector on loopback that keeps every
// span it is sent.
type OTLPReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	Addr  string
	srv   *grpc.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

// StartOTLPReceiver listens on 127.0.0.1 (a free port). Close stops it.
func StartOTLPReceiver() (*OTLPReceiver, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &OTLPReceiver{Addr: lis.Addr().String(), srv: grpc.NewServer()}
	coltracepb.RegisterTraceServiceServer(r.srv, r)
	go r.srv.Serve(lis)
	return r, nil
}

// Export implements the collector's trace service.
func (r *OTLPReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Spans returns the spans received so far.
func (r *OTLPReceiver) Spans() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// Close stops the receiver.
func (r *OTLPReceiver) Close() { r.srv.Stop() }
