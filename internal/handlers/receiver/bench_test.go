package receiver_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/generic"
	"github.com/sentry-jml/sentry-jml/internal/handlers/receiver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// BenchmarkHookGeneric is one signed generic webhook through the whole
// handler as deployed (the telemetry package's tracer and meter providers,
// embedded JetStream, 202 after the ack), without the network: its
// allocations and CPU per event are the receiver's own share of `jml bench
// ingest`. "no-exporter" is OTEL_TRACES_EXPORTER=none (spans carry ids but
// record nothing, as in `jml bench ingest`); "exporting" records every span
// and hands it to a batching exporter that discards it.
func BenchmarkHookGeneric(b *testing.B) {
	b.Run("no-exporter", func(b *testing.B) { benchHookGeneric(b, telemetry.Options{TracesExporter: "none"}) })
	b.Run("exporting", func(b *testing.B) { benchHookGeneric(b, telemetry.Options{SpanExporter: discardSpans{}}) })
}

type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

func benchHookGeneric(b *testing.B, topts telemetry.Options) {
	tel, err := telemetry.New(context.Background(), topts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	_, nc, js := natstest.Run(b)
	if err := events.EnsureStreams(context.Background(), js, events.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
	g, err := generic.NewSource([]string{secret}, nil)
	if err != nil {
		b.Fatal(err)
	}
	tp, mp, prop := tel.TracerProvider, tel.MeterProvider, tel.Propagator
	// The publisher as app.NewReceiver builds it (the JetStream context bounds the ack wait).
	ajs, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	r, err := receiver.New(receiver.Options{Publisher: events.NewAsyncPublisher(ajs, tp, prop, 0), Sources: []sources.Source{g},
		TracerProvider: tp, MeterProvider: mp, Propagator: prop})
	if err != nil {
		b.Fatal(err)
	}
	key, _ := signature.DecodeStandardSecret(secret)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := "msg_b_" + strconv.Itoa(i)
		body := []byte(`{"type":"leaver","occurred_at":"2026-11-28T10:00:00Z","person":{"id":"` + id + `","status":"terminated"}}`)
		now := time.Now()
		req := httptest.NewRequest(http.MethodPost, "/hooks/generic", bytes.NewReader(body))
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", signature.Sign(key, id, now, body))
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
