package sentry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// remaining collects jml_sentry_rate_limit_remaining as endpoint → value.
func remaining(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "jml_sentry_rate_limit_remaining" {
				continue
			}
			for _, p := range m.Data.(metricdata.Gauge[int64]).DataPoints {
				method, _ := p.Attributes.Value("http.request.method")
				ep, _ := p.Attributes.Value("sentry.endpoint")
				out[method.AsString()+" "+ep.AsString()] = p.Value
			}
		}
	}
	return out
}

func TestRateLimitRemainingGauge(t *testing.T) {
	reset := time.Now().Add(time.Hour)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Sentry-Rate-Limit-Limit", "40")
		w.Header().Set("X-Sentry-Rate-Limit-Remaining", "37")
		w.Header().Set("X-Sentry-Rate-Limit-Reset", strconv.FormatInt(reset.Unix(), 10))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"1","email":"jml@acme.test","role":"manager","orgRole":"manager"}`))
	}))
	t.Cleanup(srv.Close)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c, err := New(Config{BaseURL: srv.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	if got := remaining(t, reader); len(got) != 0 {
		t.Fatalf("before any response: %v, want no bucket", got)
	}
	if _, err := c.Me(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := remaining(t, reader)
	if len(got) != 1 {
		t.Fatalf("buckets = %v, want the members/me bucket", got)
	}
	for k, v := range got {
		if v != 37 {
			t.Errorf("%s = %d, want 37 (X-Sentry-Rate-Limit-Remaining)", k, v)
		}
	}
	// Once the window has ended the whole limit is available again.
	c.remaining.now = func() time.Time { return reset.Add(time.Second) }
	for k, v := range remaining(t, reader) {
		if v != 40 {
			t.Errorf("%s after the window = %d, want the limit 40", k, v)
		}
	}
	// A rate-limit 429 empties the bucket until the reset.
	c.remaining.now = time.Now
	c.remaining.record("GET", "/x/", Limits{Present: true, Limit: 40, Remaining: 5, Exceeded: true, Reset: reset})
	if v := remaining(t, reader)["GET /x/"]; v != 0 {
		t.Errorf("after a 429: %d, want 0", v)
	}
}
