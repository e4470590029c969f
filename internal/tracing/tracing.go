// Package tracing sets up OpenTelemetry tracing for the daemon: spans over
// OTLP/gRPC when an endpoint is configured (tracing.endpoint, or the
// standard OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
// nothing at all otherwise. No global state: the provider is passed to what
// makes spans.
package tracing

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/stats"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/version"
)

// Tracing is the daemon's tracer provider: real when enabled, no-op
// otherwise.
type Tracing struct {
	provider trace.TracerProvider
	sdk      *sdktrace.TracerProvider // nil when off
	endpoint string
}

// Enabled reports whether cfg or the environment names an OTLP endpoint
// (and OTEL_SDK_DISABLED does not say otherwise).
func Enabled(cfg config.Tracing) bool {
	if os.Getenv("OTEL_SDK_DISABLED") == "true" {
		return false
	}
	return cfg.Endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup builds the provider. Off, it costs nothing: no exporter, no
// instrumentation of the gRPC server, no-op spans.
func Setup(ctx context.Context, cfg config.Tracing) (*Tracing, error) {
	if !Enabled(cfg) {
		return &Tracing{provider: noop.NewTracerProvider()}, nil
	}
	var opts []otlptracegrpc.Option
	if cfg.Endpoint != "" {
		opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
	}
	if cfg.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exporter, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", version.String()),
	)
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exporter), sdktrace.WithResource(res)}
	if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		// A caller's sampling decision (kubelet's) wins; a trace that
		// starts in berth is sampled at the configured ratio.
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SamplingRatio))))
	}
	sdk := sdktrace.NewTracerProvider(tpOpts...)
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "from OTEL_EXPORTER_OTLP_*"
	}
	return &Tracing{provider: sdk, sdk: sdk, endpoint: endpoint}, nil
}

// On reports whether spans are exported.
func (t *Tracing) On() bool { return t.sdk != nil }

// Endpoint is where spans go ("" when off).
func (t *Tracing) Endpoint() string { return t.endpoint }

// Tracer is berth's tracer.
func (t *Tracing) Tracer() trace.Tracer { return t.provider.Tracer("github.com/berth-cri/berth") }

// serverHandler instruments the CRI server: a span per call that continues
// the caller's trace from the W3C traceparent in the gRPC metadata (as
// kubelet sends it). Nil when tracing is off.
func (t *Tracing) serverHandler() stats.Handler {
	if t.sdk == nil {
		return nil
	}
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
	)
}

// Shutdown exports what is buffered and stops.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}
