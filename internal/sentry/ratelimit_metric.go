package sentry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// remainingGauge exports jml_sentry_rate_limit_remaining: per method and
// endpoint pattern (Sentry's rate-limit buckets), the requests left in the
// current window as the last response's X-Sentry-Rate-Limit-Remaining said.
// Once that window has ended the whole limit is available again, so the gauge
// shows X-Sentry-Rate-Limit-Limit. A bucket appears with its first response
// carrying the headers (the start-up check makes the first calls); Sentry
// without them (self-hosted, limiter off) has no series.
type remainingGauge struct {
	now     func() time.Time
	mu      sync.Mutex
	buckets map[remainingKey]Limits
}

type remainingKey struct{ method, pattern string }

func newRemainingGauge(m metric.Meter) (*remainingGauge, error) {
	g := &remainingGauge{now: time.Now, buckets: map[remainingKey]Limits{}}
	_, err := m.Int64ObservableGauge("jml_sentry_rate_limit_remaining",
		metric.WithDescription("Requests left in Sentry's current rate-limit window per method and endpoint (X-Sentry-Rate-Limit-Remaining; the limit once the window has ended)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			g.observe(o)
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return g, nil
}

// record keeps what a response said about its bucket.
func (g *remainingGauge) record(method, pattern string, l Limits) {
	if !l.Present || l.Limit <= 0 && l.Remaining <= 0 && !l.Exceeded {
		return
	}
	g.mu.Lock()
	g.buckets[remainingKey{method, pattern}] = l
	g.mu.Unlock()
}

func (g *remainingGauge) observe(o metric.Int64Observer) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, l := range g.buckets {
		v := l.Remaining
		if l.Exceeded {
			v = 0
		}
		if !l.Reset.IsZero() && !now.Before(l.Reset) && l.Limit > 0 {
			v = l.Limit // the window ended: a fresh one is available
		}
		o.Observe(int64(v), metric.WithAttributes(attribute.String("http.request.method", k.method), attribute.String("sentry.endpoint", k.pattern)))
	}
}

// retryReasons are the reason labels of sentry_client_retries_total known in
// advance (a retried 5xx is "status_<code>"); each is exported at zero from
// the start.
func retryReasons() []string {
	return []string{"rate_limited", "transport", "status_408", "status_500", "status_502", "status_503", "status_504"}
}

// zeroRetries exports the known retry reasons at zero.
func zeroRetries(c metric.Int64Counter) {
	for _, r := range retryReasons() {
		c.Add(context.Background(), 0, metric.WithAttributes(attribute.String("reason", r)))
	}
}
