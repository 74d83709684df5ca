package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// The variables follow the OpenTelemetry SDK environment variable
// specification (opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/).

// httpCollector counts OTLP/HTTP trace requests.
func httpCollector(t *testing.T) (url string, traces func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			mu.Lock()
			n++
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestTracesExporterList: OTEL_TRACES_EXPORTER=otlp,console is a list — both
// exporters get the span.
func TestTracesExporterList(t *testing.T) {
	url, traces := httpCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	ctx := context.Background()
	var console bytes.Buffer
	tel, err := telemetry.New(ctx, telemetry.Options{TracesExporter: "otlp, console", Console: &console})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider.Tracer("t").Start(ctx, "listed")
	span.End()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if traces() == 0 {
		t.Error("the OTLP collector got no traces")
	}
	if !strings.Contains(console.String(), `"Name":"listed"`) {
		t.Errorf("console got no span: %q", console.String())
	}
	for _, bad := range []string{"zipkin", "none,otlp", "otlp,jaeger"} {
		if _, err := telemetry.New(ctx, telemetry.Options{TracesExporter: bad}); err == nil {
			t.Errorf("OTEL_TRACES_EXPORTER=%s was accepted", bad)
		}
	}
}

type grpcTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans int
}

func (g *grpcTraces) Export(_ context.Context, r *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, rs := range r.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			g.spans += len(ss.Spans)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestOTLPProtocolGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc sends spans over gRPC
// (it used to be ignored: OTLP/HTTP was always used); an unknown protocol is
// refused.
func TestOTLPProtocolGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	col := &grpcTraces{}
	coltracepb.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Options{TracesExporter: "otlp", OTLPProtocol: "grpc"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider.Tracer("t").Start(ctx, "over-grpc")
	span.End()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	col.mu.Lock()
	got := col.spans
	col.mu.Unlock()
	if got != 1 {
		t.Fatalf("gRPC collector got %d spans, want 1", got)
	}
	// The per-signal variable wins over the general one.
	if _, err := telemetry.New(ctx, telemetry.Options{TracesExporter: "otlp", OTLPProtocol: "grpc", OTLPTracesProtocol: "http/json"}); err == nil {
		t.Fatal("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json was accepted")
	}
	if _, err := telemetry.New(ctx, telemetry.Options{MetricsExporter: "otlp", OTLPMetricsProtocol: "thrift"}); err == nil {
		t.Fatal("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=thrift was accepted")
	}
}

func serviceName(t *testing.T, tel *telemetry.Telemetry) string {
	t.Helper()
	v, ok := tel.Resource.Set().Value(semconv.ServiceNameKey)
	if !ok {
		t.Fatal("no service.name")
	}
	return v.AsString()
}

// TestServiceNameFromResourceAttributes: service.name from
// OTEL_RESOURCE_ATTRIBUTES is kept (it used to be overwritten by the default),
// OTEL_SERVICE_NAME wins over it, and the default applies only when neither names one.
func TestServiceNameFromResourceAttributes(t *testing.T) {
	ctx := context.Background()
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	tel, err := telemetry.New(ctx, telemetry.Options{ServiceName: "sentry-jml-worker"})
	if err != nil {
		t.Fatal(err)
	}
	if got := serviceName(t, tel); got != "sentry-jml-worker" {
		t.Errorf("default: service.name %q", got)
	}
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=jml-eu,deployment.environment.name=prod")
	if tel, err = telemetry.New(ctx, telemetry.Options{ServiceName: "sentry-jml-worker"}); err != nil {
		t.Fatal(err)
	}
	if got := serviceName(t, tel); got != "jml-eu" {
		t.Errorf("OTEL_RESOURCE_ATTRIBUTES: service.name %q, want jml-eu", got)
	}
	t.Setenv("OTEL_SERVICE_NAME", "jml-named")
	if tel, err = telemetry.New(ctx, telemetry.Options{ServiceName: "sentry-jml-worker"}); err != nil {
		t.Fatal(err)
	}
	if got := serviceName(t, tel); got != "jml-named" {
		t.Errorf("OTEL_SERVICE_NAME: service.name %q, want jml-named", got)
	}
	// Spans carry it.
	exp := tracetest.NewInMemoryExporter()
	if tel, err = telemetry.New(ctx, telemetry.Options{ServiceName: "x", SpanExporter: exp, Synchronous: true}); err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider.Tracer("t").Start(ctx, "s")
	span.End()
	if v, _ := exp.GetSpans()[0].Resource.Set().Value(semconv.ServiceNameKey); v.AsString() != "jml-named" {
		t.Errorf("span resource service.name %q", v.AsString())
	}
}

// TestPropagators: OTEL_PROPAGATORS chooses the propagators (through autoprop);
// unset means W3C trace context and baggage; an unknown name is refused.
func TestPropagators(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		v    string
		want []string
		not  []string
	}{
		{"", []string{"traceparent", "baggage"}, []string{"b3"}},
		{"b3", []string{"b3"}, []string{"traceparent"}},
		{"tracecontext,b3multi", []string{"traceparent", "x-b3-traceid"}, []string{"baggage"}},
	} {
		tel, err := telemetry.New(ctx, telemetry.Options{Propagators: c.v})
		if err != nil {
			t.Fatalf("%q: %v", c.v, err)
		}
		fields := tel.Propagator.Fields()
		for _, f := range c.want {
			if !slices.Contains(fields, f) {
				t.Errorf("OTEL_PROPAGATORS=%q: fields %v lack %s", c.v, fields, f)
			}
		}
		for _, f := range c.not {
			if slices.Contains(fields, f) {
				t.Errorf("OTEL_PROPAGATORS=%q: fields %v have %s", c.v, fields, f)
			}
		}
	}
	if _, err := telemetry.New(ctx, telemetry.Options{Propagators: "tracecontext,smoke-signals"}); err == nil {
		t.Fatal("an unknown propagator was accepted")
	}
}

// TestSDKDisabled: OTEL_SDK_DISABLED=true records and exports nothing, while
// /metrics keeps serving.
func TestSDKDisabled(t *testing.T) {
	url, traces := httpCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Options{Disabled: true, TracesExporter: "otlp", MetricsExporter: "otlp"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider.Tracer("t").Start(ctx, "s")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("a span was recorded with the SDK disabled")
	}
	span.End()
	c, _ := tel.MeterProvider.Meter("t").Int64Counter("jml_disabled_probe")
	c.Add(ctx, 1)
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "jml_disabled_probe_total 1") {
		t.Error("/metrics stopped serving with the SDK disabled")
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := traces(); n != 0 {
		t.Errorf("%d trace exports with the SDK disabled", n)
	}
}
