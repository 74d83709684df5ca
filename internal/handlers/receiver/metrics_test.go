package receiver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/generic"
	"github.com/sentry-jml/sentry-jml/internal/handlers/receiver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

// TestReceiverSeriesAtZeroAndNoMetricsRoute: the enabled sources' series are
// exported at zero from construction (JMLNoReadyWebhook and the signature
// alert see them before the first failure), and the public webhook port does
// not serve /metrics.
func TestReceiverSeriesAtZeroAndNoMetricsRoute(t *testing.T) {
	_, _, js := natstest.Run(t)
	g, err := generic.NewSource([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	r, err := receiver.New(receiver.Options{Publisher: events.NewPublisher(js, nil, nil), Sources: []sources.Source{g}, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "jml_events_received" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				src, _ := p.Attributes.Value("source")
				typ, _ := p.Attributes.Value("type")
				out, _ := p.Attributes.Value("outcome")
				got[src.AsString()+"/"+typ.AsString()+"/"+out.AsString()] = p.Value
			}
		}
	}
	for _, k := range []string{"generic//unauthorized", "generic//invalid", "generic//too_large", "generic/leaver/accepted", "generic/leaver/unavailable", "generic/joiner/duplicate"} {
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("%s = %d, %v; want 0 from the start", k, v, ok)
		}
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /metrics on the webhook port: %d, want 404 (metrics are on the admin listener)", rec.Code)
	}
}
