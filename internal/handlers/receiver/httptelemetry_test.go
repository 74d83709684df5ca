package receiver_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/generic"
	"github.com/sentry-jml/sentry-jml/internal/handlers/receiver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// TestServerSpansAndDuration: each webhook request is a server span that
// continues the caller's trace, named by its route, with the status and, for
// a 5xx, an error; http.server.request.duration is recorded per route, method
// and status, and never by the Host header a sender chooses (no series per
// forged host).
func TestServerSpansAndDuration(t *testing.T) {
	ns, _, js := natstest.Run(t)
	g, err := generic.NewSource([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	prop := propagation.TraceContext{}
	r, err := receiver.New(receiver.Options{Publisher: events.NewPublisher(js, tp, prop), Sources: []sources.Source{g},
		TracerProvider: tp, MeterProvider: mp, Propagator: prop,
		Extra: map[string]http.Handler{"/scim/v2/": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })}})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := signature.DecodeStandardSecret(secret)
	post := func(id, host string, signed bool) int {
		now := time.Now()
		req := httptest.NewRequest(http.MethodPost, "/hooks/generic", bytes.NewReader([]byte(body)))
		req.Host = host
		req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		if signed {
			req.Header.Set("webhook-signature", signature.Sign(key, id, now, []byte(body)))
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		return rec.Code
	}
	for i := range 5 {
		if code := post("msg_t"+strconv.Itoa(i), "forged-"+strconv.Itoa(i)+".example", true); code != http.StatusAccepted {
			t.Fatalf("signed post: %d", code)
		}
	}
	if code := post("msg_u", "webhooks.example", false); code != http.StatusUnauthorized {
		t.Fatalf("unsigned post: %d", code)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("BREW", "/scim/v2/Users", nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("extra route: %d", rec.Code)
	}
	ns.NATS().Shutdown()
	ns.NATS().WaitForShutdown()
	if code := post("msg_down", "webhooks.example", true); code != http.StatusServiceUnavailable {
		t.Fatalf("with NATS down: %d", code)
	}

	var servers []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			servers = append(servers, s)
		}
	}
	if len(servers) != 8 {
		t.Fatalf("%d server spans, want 8", len(servers))
	}
	attrs := func(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
		m := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			m[kv.Key] = kv.Value
		}
		return m
	}
	first := servers[0]
	if first.Name() != "POST /hooks/generic" || first.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !first.Parent().IsRemote() {
		t.Fatalf("first server span %q parent %v", first.Name(), first.Parent())
	}
	if a := attrs(first); a["http.route"].AsString() != "/hooks/generic" || a["http.response.status_code"].AsInt64() != 202 ||
		a["http.request.method"].AsString() != "POST" || first.Status().Code == codes.Error {
		t.Fatalf("first server span attributes %v status %v", a, first.Status())
	}
	if a := attrs(servers[5]); a["http.response.status_code"].AsInt64() != 401 || servers[5].Status().Code == codes.Error {
		t.Fatalf("401 span: %v %v (a 4xx is not a server error)", a, servers[5].Status())
	}
	if servers[6].Name() != "_OTHER /scim/v2/" || attrs(servers[6])["http.response.status_code"].AsInt64() != 418 {
		t.Fatalf("extra route span %q %v", servers[6].Name(), attrs(servers[6]))
	}
	if a := attrs(servers[7]); a["http.response.status_code"].AsInt64() != 503 || servers[7].Status().Code != codes.Error || a["error.type"].AsString() != "503" {
		t.Fatalf("503 span: %v %v", a, servers[7].Status())
	}
	// The producer span of an accepted event is the server span's child.
	producer := false
	for _, s := range spans.Ended() {
		producer = producer || s.SpanKind() == trace.SpanKindProducer && s.Parent().SpanID() == first.SpanContext().SpanID()
	}
	if !producer {
		t.Fatal("no producer span under the first server span")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "http.server.request.duration" {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("unit %q", m.Unit)
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				if _, ok := p.Attributes.Value("server.address"); ok {
					t.Errorf("a duration series carries server.address: %v", p.Attributes.ToSlice())
				}
				meth, _ := p.Attributes.Value("http.request.method")
				route, _ := p.Attributes.Value("http.route")
				status, _ := p.Attributes.Value("http.response.status_code")
				got[meth.AsString()+" "+route.AsString()+" "+strconv.FormatInt(status.AsInt64(), 10)] += p.Count
			}
		}
	}
	want := map[string]uint64{"POST /hooks/generic 202": 5, "POST /hooks/generic 401": 1, "_OTHER /scim/v2/ 418": 1, "POST /hooks/generic 503": 1}
	if len(got) != len(want) {
		t.Fatalf("duration series %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d requests, want %d (all: %v)", k, got[k], n, got)
		}
	}
}
