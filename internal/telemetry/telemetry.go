package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Options choose exporters. cmd/* fills them from the standard OTEL_* variables
// (see the OpenTelemetry SDK environment variable specification); the OTLP
// exporters themselves read OTEL_EXPORTER_OTLP_{ENDPOINT,HEADERS,TIMEOUT,…}.
type Options struct {
	// ServiceName is the default service.name: used only when the resource from
	// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES names none.
	ServiceName string
	// TracesExporter is OTEL_TRACES_EXPORTER: a comma-separated list of "otlp",
	// "console" (JSON spans to Console) and "none". Empty means none here; cmd
	// applies the spec default (otlp) for the production processes.
	TracesExporter string
	// MetricsExporter is OTEL_METRICS_EXPORTER: a comma-separated list of
	// "prometheus", "otlp" (pushed every 15 s), "console" and "none". /metrics
	// is always served, whatever the list says.
	MetricsExporter string
	// OTLPProtocol is OTEL_EXPORTER_OTLP_PROTOCOL ("grpc" or "http/protobuf",
	// the default); OTLPTracesProtocol and OTLPMetricsProtocol are the
	// per-signal OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL and win over it.
	OTLPProtocol, OTLPTracesProtocol, OTLPMetricsProtocol string
	// Propagators is OTEL_PROPAGATORS (autoprop names: tracecontext, baggage,
	// b3, b3multi, jaeger, xray, ottrace, none); empty means
	// "tracecontext,baggage".
	Propagators string
	// Disabled is OTEL_SDK_DISABLED=true: no span is recorded or exported and
	// nothing is pushed; /metrics on the admin listener keeps serving, since
	// the alert rules and probes read it.
	Disabled bool
	Console  io.Writer
	// SpanExporter, when set, overrides TracesExporter (tests use an in-memory one).
	SpanExporter sdktrace.SpanExporter
	// Synchronous exports spans as they end (tests); default batches.
	Synchronous bool
}

// Telemetry holds a process's providers.
type Telemetry struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	Registry       *prometheus.Registry
	// Resource is the resource every span and metric carries.
	Resource *resource.Resource
	shutdown []func(context.Context) error
}

// List splits an OTEL_* list value: comma separated, spaces trimmed, empty
// items and repeats dropped, lower-cased.
func List(v string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range strings.Split(v, ",") {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

// New builds the providers. Spans are recorded only when a trace exporter is
// configured; without one (and unless Disabled) every span still has ids, so
// logs carry trace_id and span_id and the trace context is propagated (see
// idOnlyProvider).
func New(ctx context.Context, o Options) (*Telemetry, error) {
	if o.ServiceName == "" {
		o.ServiceName = "sentry-jml"
	}
	// Detectors apply in order, later ones winning: the default name first, so
	// OTEL_RESOURCE_ATTRIBUTES=service.name=… and OTEL_SERVICE_NAME keep theirs.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(o.ServiceName)),
		resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("telemetry resource (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	prop, err := propagators(o.Propagators)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{Propagator: prop, Registry: prometheus.NewRegistry(), Resource: res}
	t.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if o.Disabled {
		t.TracerProvider = tracenoop.NewTracerProvider()
	} else {
		exps := []sdktrace.SpanExporter{o.SpanExporter}
		if o.SpanExporter == nil {
			if exps, err = spanExporters(ctx, o); err != nil {
				return nil, err
			}
		}
		if len(exps) == 0 {
			// Nothing is exported: spans get ids (for logs and propagation)
			// but are not recorded (idOnlyProvider).
			t.TracerProvider = idOnlyProvider{}
		} else {
			tp := tracerProvider(res, exps, o.Synchronous)
			t.TracerProvider = tp
			t.shutdown = append(t.shutdown, tp.Shutdown)
		}
	}

	pexp, err := otelprom.New(otelprom.WithRegisterer(t.Registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithReader(pexp)}
	readers, err := metricReaders(ctx, o)
	if err != nil {
		return nil, err
	}
	for _, r := range readers {
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(append(mopts, sdkmetric.WithResource(res),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Name: "jml_time_to_revoke_seconds"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600}}},
		)))...)
	t.MeterProvider = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	return t, nil
}

// tracerProvider records spans and hands them to exps: batched, or as they
// end when synchronous (tests).
func tracerProvider(res *resource.Resource, exps []sdktrace.SpanExporter, synchronous bool) *sdktrace.TracerProvider {
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, exp := range exps {
		if synchronous {
			topts = append(topts, sdktrace.WithSyncer(exp))
		} else {
			topts = append(topts, sdktrace.WithBatcher(exp))
		}
	}
	return sdktrace.NewTracerProvider(topts...)
}

// propagators builds OTEL_PROPAGATORS through autoprop (which knows every
// propagator the spec names); empty means W3C trace context and baggage.
func propagators(v string) (propagation.TextMapPropagator, error) {
	names := List(v)
	if len(names) == 0 {
		names = []string{"tracecontext", "baggage"}
	}
	p, err := autoprop.TextMapPropagator(names...)
	if err != nil {
		return nil, fmt.Errorf("OTEL_PROPAGATORS=%q: %w", v, err)
	}
	return p, nil
}

func protocol(signal, general string) (string, error) {
	p := firstNonEmpty(signal, general, "http/protobuf")
	switch p {
	case "grpc", "http/protobuf":
		return p, nil
	}
	return "", fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", p)
}

func spanExporters(ctx context.Context, o Options) ([]sdktrace.SpanExporter, error) {
	names := List(o.TracesExporter)
	var exps []sdktrace.SpanExporter
	for _, n := range names {
		var exp sdktrace.SpanExporter
		var err error
		switch n {
		case "none":
			if len(names) > 1 {
				return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: none cannot be combined with other exporters", o.TracesExporter)
			}
			continue
		case "console":
			exp, err = stdouttrace.New(stdouttrace.WithWriter(orDiscard(o.Console)))
		case "otlp":
			var proto string
			if proto, err = protocol(o.OTLPTracesProtocol, o.OTLPProtocol); err != nil {
				return nil, err
			}
			if proto == "grpc" {
				exp, err = otlptracegrpc.New(ctx)
			} else {
				exp, err = otlptracehttp.New(ctx)
			}
		default:
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: %q is not otlp, console or none", o.TracesExporter, n)
		}
		if err != nil {
			return nil, fmt.Errorf("trace exporter %s: %w", n, err)
		}
		exps = append(exps, exp)
	}
	return exps, nil
}

func metricReaders(ctx context.Context, o Options) ([]sdkmetric.Reader, error) {
	names := List(o.MetricsExporter)
	var out []sdkmetric.Reader
	for _, n := range names {
		var exp sdkmetric.Exporter
		var err error
		switch n {
		case "none", "prometheus":
			// /metrics is served on the admin listener in every case.
			if n == "none" && len(names) > 1 {
				return nil, fmt.Errorf("OTEL_METRICS_EXPORTER=%q: none cannot be combined with other exporters", o.MetricsExporter)
			}
			continue
		case "console":
			if o.Disabled {
				continue
			}
			exp, err = stdoutmetric.New(stdoutmetric.WithWriter(orDiscard(o.Console)))
		case "otlp":
			var proto string
			if proto, err = protocol(o.OTLPMetricsProtocol, o.OTLPProtocol); err != nil {
				return nil, err
			}
			if o.Disabled {
				continue
			}
			if proto == "grpc" {
				exp, err = otlpmetricgrpc.New(ctx)
			} else {
				exp, err = otlpmetrichttp.New(ctx)
			}
		default:
			return nil, fmt.Errorf("OTEL_METRICS_EXPORTER=%q: %q is not otlp, prometheus, console or none", o.MetricsExporter, n)
		}
		if err != nil {
			return nil, fmt.Errorf("metric exporter %s: %w", n, err)
		}
		out = append(out, sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(15*time.Second)))
	}
	return out, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// MetricsHandler serves the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{})
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
