package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Options choose exporters. cmd/* fills them from the standard OTEL_* variables.
type Options struct {
	ServiceName string
	// TracesExporter is "none" (default), "console" (JSON spans to Console) or "otlp"
	// (OTLP/HTTP; endpoint and headers from OTEL_EXPORTER_OTLP_* as the SDK reads them).
	TracesExporter string
	// MetricsExporter is "prometheus" or "" (the default: /metrics only), "otlp"
	// (also pushed over OTLP/HTTP every 15 s; endpoint from OTEL_EXPORTER_OTLP_*)
	// or "none" (/metrics still served).
	MetricsExporter string
	Console         io.Writer
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
	shutdown       []func(context.Context) error
}

// New builds the providers. Spans are always recorded (so logs carry trace ids)
// even when nothing is exported.
func New(ctx context.Context, o Options) (*Telemetry, error) {
	if o.ServiceName == "" {
		o.ServiceName = "sentry-jml"
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(o.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	t := &Telemetry{
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Registry:   prometheus.NewRegistry(),
	}
	t.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	exp := o.SpanExporter
	if exp == nil {
		switch o.TracesExporter {
		case "", "none":
		case "console":
			w := o.Console
			if w == nil {
				w = io.Discard
			}
			exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
		case "otlp":
			exp, err = otlptracehttp.New(ctx)
		default:
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", o.TracesExporter)
		}
		if err != nil {
			return nil, fmt.Errorf("trace exporter: %w", err)
		}
	}
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exp != nil {
		if o.Synchronous {
			topts = append(topts, sdktrace.WithSyncer(exp))
		} else {
			topts = append(topts, sdktrace.WithBatcher(exp))
		}
	}
	tp := sdktrace.NewTracerProvider(topts...)
	t.TracerProvider = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)

	pexp, err := otelprom.New(otelprom.WithRegisterer(t.Registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithReader(pexp)}
	switch o.MetricsExporter {
	case "", "none", "prometheus":
	case "otlp":
		mexp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("metric exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(15*time.Second))))
	default:
		return nil, fmt.Errorf("OTEL_METRICS_EXPORTER=%q: want otlp, prometheus or none", o.MetricsExporter)
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
