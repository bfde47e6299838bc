package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/x0tta6bl4/x0t/api"
)

// Tracing: OpenTelemetry spans for every API request (named after its route
// pattern, with its status) and for enrollment (a span with one child per
// step), exported over OTLP/HTTP when the standard environment asks for it
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Without
// it the tracer is the no-op one: no exporter, no goroutine, and the HTTP
// handler is not even wrapped.
//
// Spans never carry secrets: no join token, API key or request body, only
// identifiers (node ID, mesh, token ID) and outcomes.

// tracerName is the instrumentation scope of the control plane's spans.
const tracerName = "github.com/x0tta6bl4/x0t/control"

// ServiceName is the default service.name of the control plane's traces
// (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override it).
const ServiceName = "x0t-control"

// Span names and attributes of enrollment.
const (
	spanEnroll           = "enroll"
	stepVerifyProof      = "enroll.verify_proof" // the node's hybrid signature over its keys and the token
	stepTokenCheck       = "enroll.token_check"  // token lookup and validity, the mesh, revocation
	stepAllocate         = "enroll.allocate"     // name and overlay address
	stepCertIssue        = "enroll.cert_issue"   // certificate signed by the mesh CA (auto-approve only)
	stepStoreAppend      = "enroll.store_append" // token use and node record appended to the audit log, committed
	attrEnrollResult     = attribute.Key("x0t.enroll.result")
	attrNodeID           = attribute.Key("x0t.node.id")
	attrMeshID           = attribute.Key("x0t.mesh.id")
	attrMeshName         = attribute.Key("x0t.mesh.name")
	attrTokenID          = attribute.Key("x0t.token.id")
	attrHTTPRoute        = semconv.HTTPRouteKey
	envSDKDisabled       = "OTEL_SDK_DISABLED"
	envTracesExporter    = "OTEL_TRACES_EXPORTER"
	envEndpoint          = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint    = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol          = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol    = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	protocolHTTPProtobuf = "http/protobuf"
)

// TracingEnabled reports whether the OTEL_* environment asks for traces: an
// OTLP endpoint is set and the SDK is not disabled. It fails on settings
// this build can not honour (another exporter, the gRPC protocol), rather
// than silently sending nothing or the wrong protocol.
func TracingEnabled() (bool, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv(envSDKDisabled)), "true") {
		return false, nil
	}
	switch exp := strings.TrimSpace(os.Getenv(envTracesExporter)); exp {
	case "none":
		return false, nil
	case "", "otlp":
	default:
		return false, fmt.Errorf("control: %s=%q: only otlp (or none) is built in", envTracesExporter, exp)
	}
	if os.Getenv(envEndpoint) == "" && os.Getenv(envTracesEndpoint) == "" {
		return false, nil
	}
	proto := os.Getenv(envTracesProtocol)
	if proto == "" {
		proto = os.Getenv(envProtocol)
	}
	if proto != "" && proto != protocolHTTPProtobuf {
		return false, fmt.Errorf("control: OTLP protocol %q: only %s is built in", proto, protocolHTTPProtobuf)
	}
	return true, nil
}

// NewTracerProvider returns the tracer provider the OTEL_* environment asks
// for and a function that flushes and stops it. When tracing is not enabled
// (see TracingEnabled) it is the no-op provider and shutdown does nothing.
// Otherwise spans are batched and exported by OTLP/HTTP (protobuf); the SDK
// reads the endpoint, headers, timeout, compression, TLS files, sampler
// (OTEL_TRACES_SAMPLER) and batching (OTEL_BSP_*) from the environment, and
// the resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, with
// service as the default service name.
func NewTracerProvider(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
	none := func(context.Context) error { return nil }
	on, err := TracingEnabled()
	if err != nil || !on {
		return noop.NewTracerProvider(), none, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("control: OTLP trace exporter: %w", err)
	}
	// Later options win: the environment overrides the defaults given here.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(Version)),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		exp.Shutdown(ctx)
		return nil, nil, fmt.Errorf("control: trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// setupTracing installs the configured tracer provider, or one from the
// environment (then owned, and shut down by Close).
func (s *Server) setupTracing(ctx context.Context) error {
	tp := s.cfg.TracerProvider
	if tp == nil {
		var (
			shutdown func(context.Context) error
			err      error
		)
		if tp, shutdown, err = NewTracerProvider(ctx, ServiceName); err != nil {
			return err
		}
		s.stopTracing = shutdown
		if _, off := tp.(noop.TracerProvider); !off {
			// Export failures surface through OpenTelemetry's global
			// handler; send them to our log rather than the SDK's default
			// logger (the handler is process-wide: the last server wins).
			log := s.log
			otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("opentelemetry", "err", err) }))
			s.log.Info("exporting traces by OTLP")
		}
	}
	s.tracerProvider = tp
	s.tracer = tp.Tracer(tracerName, trace.WithInstrumentationVersion(Version))
	return nil
}

// traceHTTP wraps the API handler in a server span per request (W3C trace
// context accepted from callers), unless tracing is off. instrument renames
// the span after the route once chi has matched it.
func (s *Server) traceHTTP(h http.Handler) http.Handler {
	if _, off := s.tracerProvider.(noop.TracerProvider); off {
		return h
	}
	return otelhttp.NewHandler(h, "x0t-control",
		otelhttp.WithTracerProvider(s.tracerProvider),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		// Metrics are Prometheus's job (metrics.go): no OpenTelemetry meters.
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
}

// enrollTrace follows one enrollment: its span, the step in progress, and
// the outcome it is counted under.
type enrollTrace struct {
	s       *Server
	ctx     context.Context // carries the enroll span: steps are its children
	span    trace.Span
	step    trace.Span // in progress; nil before the first
	outcome string     // set on success: approved, pending or existing
}

func (s *Server) traceEnroll(ctx context.Context) (context.Context, *enrollTrace) {
	ctx, span := s.tracer.Start(ctx, spanEnroll)
	return ctx, &enrollTrace{s: s, ctx: ctx, span: span}
}

// stepTo ends the step in progress (the enrollment went on, so it succeeded)
// and starts the next one. A store retry runs the steps again: the trace
// shows each attempt.
func (e *enrollTrace) stepTo(name string) {
	if e.step != nil {
		e.step.End()
	}
	_, e.step = e.s.tracer.Start(e.ctx, name)
}

// set adds attributes to the enroll span.
func (e *enrollTrace) set(kv ...attribute.KeyValue) { e.span.SetAttributes(kv...) }

// succeeded records what a successful enrollment did with the node.
func (e *enrollTrace) succeeded(status string, existing bool) {
	switch {
	case existing:
		e.outcome = enrollExisting
	case status == api.StatusApproved:
		e.outcome = enrollApproved
	default:
		e.outcome = enrollPending
	}
}

// end closes the trace of an enrollment that returned err and counts it.
// The step in progress when it failed is the one that failed. Errors here
// are the ones the client sees (huma errors; internal ones are already
// reduced to "internal error"), so they hold no secret.
func (e *enrollTrace) end(err error) {
	result := e.outcome
	if err != nil {
		result = enrollError
		var se huma.StatusError
		if errors.As(err, &se) {
			switch st := se.GetStatus(); {
			case st == http.StatusTooManyRequests:
				result = enrollRateLimited
			case st >= 400 && st < 500:
				result = enrollRejected
			}
		}
		if e.step != nil {
			e.step.SetStatus(codes.Error, err.Error())
		}
		if result == enrollError {
			e.span.SetStatus(codes.Error, err.Error())
		}
	}
	if e.step != nil {
		e.step.End()
	}
	if result == "" {
		result = enrollError // a success that never said what it did: a bug, but counted
	}
	e.span.SetAttributes(attrEnrollResult.String(result))
	e.span.End()
	e.s.metrics.enrolls.WithLabelValues(result).Inc()
}
