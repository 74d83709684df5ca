package sentry

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// stubTransport answers 204 without I/O; it keeps the request it saw.
type stubTransport struct{ last *http.Request }

func (s *stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.last = r
	return &http.Response{StatusCode: http.StatusNoContent, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
}

func newStubRequest(ctx context.Context, t testing.TB) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://sentry.test:8080/api/0/organizations/acme/members/42/?query=email:jane@acme.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

const stubPattern = "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/"

// TestHTTPTelemetry: with tracing on, each request gets a client span named
// by method and pattern, carries the W3C trace context, redacts the query,
// and the duration metric the dashboards read is recorded by method and
// status; with tracing off, no span and no trace header, the metric still.
func TestHTTPTelemetry(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	tel, err := newHTTPTelemetry(tp, mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	stub := &stubTransport{}

	// Tracing on: the caller's span records.
	ctx, parent := tp.Tracer("test").Start(context.Background(), "sentry.DeleteMember")
	req := newStubRequest(ctx, t)
	finish := tel.begin(ctx, req, stubPattern)
	resp, _ := stub.RoundTrip(req)
	finish(resp.StatusCode, nil)
	parent.End()
	if stub.last.Header.Get("traceparent") == "" {
		t.Error("no traceparent header with tracing on")
	}
	var span sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() == "DELETE "+stubPattern {
			span = s
		}
	}
	if span == nil {
		t.Fatalf("no HTTP client span among %d", len(sr.Ended()))
	}
	if span.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Error("HTTP span is not the caller's child")
	}
	got := map[attribute.Key]string{}
	for _, a := range span.Attributes() {
		got[a.Key] = a.Value.String()
	}
	if got["http.response.status_code"] != "204" || got["http.request.method"] != "DELETE" || got["server.address"] != "sentry.test" {
		t.Errorf("span attributes = %v", got)
	}
	if u := got["url.full"]; strings.Contains(u, "jane") || !strings.Contains(u, "query=REDACTED") {
		t.Errorf("url.full = %q, want the query value redacted", u)
	}

	// Tracing off: the caller's span does not record.
	ended := len(sr.Ended())
	req = newStubRequest(context.Background(), t)
	finish = tel.begin(context.Background(), req, stubPattern)
	resp, _ = stub.RoundTrip(req)
	finish(resp.StatusCode, nil)
	if stub.last.Header.Get("traceparent") != "" {
		t.Error("traceparent header sent with no span")
	}
	if len(sr.Ended()) != ended {
		t.Error("an HTTP span was recorded with no recording caller")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var count uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "http.client.request.duration" || m.Unit != "s" {
				continue
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				method, _ := p.Attributes.Value("http.request.method")
				status, _ := p.Attributes.Value("http.response.status_code")
				if method.AsString() == "DELETE" && status.AsInt64() == 204 {
					count += p.Count
				}
			}
		}
	}
	if count != 2 {
		t.Errorf("http.client.request.duration{DELETE,204} count = %d, want 2", count)
	}
}

// BenchmarkHTTPTelemetry compares the per-request cost of the client's own
// instrumentation with otelhttp's transport it replaced, with no-op providers
// (the default when no exporter is configured) and with the SDK's.
func BenchmarkHTTPTelemetry(b *testing.B) {
	sdkTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	sdkMP := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	for _, prov := range []struct {
		name   string
		tracer *sdktrace.TracerProvider
		noop   bool
	}{{"noop", nil, true}, {"sdk", sdkTP, false}} {
		b.Run("otelhttp/"+prov.name, func(b *testing.B) {
			stub := &stubTransport{}
			opts := []otelhttp.Option{otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()), otelhttp.WithMeterProvider(metricnoop.NewMeterProvider())}
			ctx := context.Background()
			if !prov.noop {
				opts = []otelhttp.Option{otelhttp.WithTracerProvider(sdkTP), otelhttp.WithMeterProvider(sdkMP)}
				ctx, _ = sdkTP.Tracer("b").Start(ctx, "parent")
			}
			rt := otelhttp.NewTransport(stub, opts...)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(newStubRequest(ctx, b))
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
		b.Run("lean/"+prov.name, func(b *testing.B) {
			stub := &stubTransport{}
			ctx := context.Background()
			var tel *httpTelemetry
			var err error
			if prov.noop {
				tel, err = newHTTPTelemetry(tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider().Meter("b"))
			} else {
				tel, err = newHTTPTelemetry(sdkTP, sdkMP.Meter("b"))
				ctx, _ = sdkTP.Tracer("b").Start(ctx, "parent")
			}
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				req := newStubRequest(ctx, b)
				finish := tel.begin(ctx, req, stubPattern)
				resp, err := stub.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				finish(resp.StatusCode, nil)
			}
		})
	}
}
