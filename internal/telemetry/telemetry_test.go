package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// TestOTLPMetricsPushedAndPrometheusServed: with OTEL_METRICS_EXPORTER=otlp the
// metrics reach an OTLP/HTTP receiver (flushed at shutdown) and /metrics still
// serves them.
func TestOTLPMetricsPushedAndPrometheusServed(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	var bodies int
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.URL.Path)
		bodies += len(b)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Options{ServiceName: "test", MetricsExporter: "otlp"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := tel.MeterProvider.Meter("t").Int64Counter("jml_test_events")
	c.Add(ctx, 3, metric.WithAttributes())
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "jml_test_events_total 3") {
		t.Fatalf("/metrics lacks the counter:\n%s", rec.Body.String())
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "/v1/metrics" || bodies == 0 {
		t.Fatalf("OTLP receiver got %v (%d bytes)", paths, bodies)
	}
	if _, err := telemetry.New(ctx, telemetry.Options{MetricsExporter: "statsd"}); err == nil {
		t.Fatal("an unknown metrics exporter was accepted")
	}
}
