package receiver

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// serverTelemetry instruments the receiver's routes as the OpenTelemetry
// semantic conventions for HTTP servers describe: a server span per request,
// continuing the trace context the request carries, and the
// http.server.request.duration histogram the dashboards and alerts read
// (http_server_request_duration_seconds by http_request_method,
// http_response_status_code and http_route).
//
// It replaces otelhttp's handler, which per request computed a dozen
// attributes for the span and again for its three histograms (two of them,
// the body sizes, read by nothing), wrapped the writer through httpsnoop and
// copied the request twice. Here the span's attributes are computed only when
// the span records, and the histogram's attribute sets are built once per
// (route, method, status) and reused. The metric carries no server.address:
// the semantic conventions make it opt-in, and on a webhook endpoint it would
// come from the Host header, which anyone on the internet chooses — one new
// series per forged host.
type serverTelemetry struct {
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	duration metric.Float64Histogram
}

// durationKey is what varies in the duration's attributes on one route.
type durationKey struct {
	method, proto string
	status        int
	tls           bool
}

// routeSets caches one route's duration attribute sets.
type routeSets struct {
	route string
	sets  sync.Map // durationKey → metric.MeasurementOption
}

// serverDurationBuckets are the semantic conventions' advice for
// http.server.request.duration (otelhttp declared the same).
var serverDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

func newServerTelemetry(tp trace.TracerProvider, meter metric.Meter, prop propagation.TextMapPropagator) (*serverTelemetry, error) {
	d, err := meter.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP server requests."), metric.WithExplicitBucketBoundaries(serverDurationBuckets...))
	if err != nil {
		return nil, err
	}
	return &serverTelemetry{tracer: tp.Tracer(instrumentationName), prop: prop, duration: d}, nil
}

// handle wraps h, served at the mux pattern route ("POST /hooks/generic").
func (t *serverTelemetry) handle(route string, h http.Handler) http.Handler {
	// http.route is the path template, without the method the pattern starts with.
	tmpl := route
	for i := 0; i < len(route); i++ {
		if route[i] == '/' {
			tmpl = route[i:]
			break
		}
	}
	withMethod := tmpl != route // the pattern names its method: it is the span name
	rs := &routeSets{route: tmpl}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		name := route
		if !withMethod {
			name = method(r.Method) + " " + tmpl // the semantic conventions' "{method} {route}"
		}
		ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
		if span.IsRecording() {
			span.SetAttributes(t.requestAttrs(r, tmpl)...)
		}
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r.WithContext(ctx))
		status := sw.status
		if status == 0 {
			status = http.StatusOK // net/http answers 200 for a handler that wrote nothing
		}
		t.duration.Record(ctx, time.Since(start).Seconds(), rs.attrs(durationKey{method: method(r.Method), proto: r.Proto, status: status, tls: r.TLS != nil}))
		if span.IsRecording() {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= 500 {
				// Server spans are errors only for 5xx: a 4xx is the client's.
				span.SetStatus(codes.Error, strconv.Itoa(status))
				span.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
			}
		}
		span.End()
	})
}

// requestAttrs are the span's request attributes (the semantic conventions'
// required and recommended ones that cost nothing to know).
func (t *serverTelemetry) requestAttrs(r *http.Request, route string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method(r.Method)),
		attribute.String("url.path", r.URL.Path),
		attribute.String("url.scheme", scheme(r.TLS != nil)),
		attribute.String("http.route", route),
		attribute.String("network.protocol.version", protoVersion(r.Proto)),
	}
	if r.RemoteAddr != "" {
		attrs = append(attrs, attribute.String("network.peer.address", r.RemoteAddr))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, attribute.String("user_agent.original", ua))
	}
	if n := r.ContentLength; n > 0 {
		attrs = append(attrs, attribute.Int64("http.request.body.size", n))
	}
	return attrs
}

// attrs returns the duration's attribute set for k, built once. Every field
// of k has few values (method and protocol are normalised or bounded by
// net/http), so the cache stays small whatever senders send.
func (rs *routeSets) attrs(k durationKey) metric.MeasurementOption {
	if v, ok := rs.sets.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	v, _ := rs.sets.LoadOrStore(k, rs.build(k))
	return v.(metric.MeasurementOption)
}

func (rs *routeSets) build(k durationKey) metric.MeasurementOption {
	kv := []attribute.KeyValue{
		attribute.String("http.request.method", k.method),
		attribute.String("url.scheme", scheme(k.tls)),
		attribute.String("http.route", rs.route),
		attribute.Int("http.response.status_code", k.status),
	}
	if v := protoVersion(k.proto); v != "" {
		kv = append(kv, attribute.String("network.protocol.name", "http"), attribute.String("network.protocol.version", v))
	}
	if k.status >= 500 {
		kv = append(kv, attribute.String("error.type", strconv.Itoa(k.status)))
	}
	return metric.WithAttributeSet(attribute.NewSet(kv...))
}

// method is the semantic conventions' http.request.method: a known method,
// else _OTHER (a sender chooses the method: it must not choose the series).
func method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

func scheme(tls bool) string {
	if tls {
		return "https"
	}
	return "http"
}

// protoVersion is network.protocol.version from the request's protocol
// ("HTTP/1.1" → "1.1", "HTTP/2.0" → "2"); net/http only accepts HTTP/x.y,
// so the set of values is small.
func protoVersion(proto string) string {
	switch proto {
	case "HTTP/1.1":
		return "1.1"
	case "HTTP/1.0":
		return "1.0"
	case "HTTP/2.0":
		return "2"
	case "HTTP/3.0":
		return "3"
	}
	return ""
}

// statusWriter remembers the status the handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer (deadlines,
// flushing).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
