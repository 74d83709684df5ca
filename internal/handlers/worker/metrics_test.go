package worker_test

import (
	"context"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// meterWorker builds (not runs) a worker on h's stores with an in-memory
// metric reader.
func meterWorker(t *testing.T, h *harness, cv worker.Converger) (*worker.Worker, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	w, err := worker.New(worker.Options{JS: h.js, Dedupe: h.coord, Leases: h.coord, Directory: h.dir, Converger: cv, Due: h.records.Due,
		Owner: "metrics", MeterProvider: mp, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Sources: []string{"generic", "okta"}, GaugeTTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return w, reader
}

func runWorker(t *testing.T, w *worker.Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("worker did not stop")
		}
	})
}

// series maps "name{k=v,…}" (attributes in the SDK's sorted order) to the
// value of every int64 sum and gauge point.
func series(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	key := func(name string, set attribute.Set) string {
		k := name + "{"
		for i, kv := range set.ToSlice() {
			if i > 0 {
				k += ","
			}
			k += string(kv.Key) + "=" + kv.Value.String()
		}
		return k + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = p.Value
				}
			}
		}
	}
	return out
}

func TestMetricsExportedAtZeroFromConstruction(t *testing.T) {
	h := start(t)
	h.stop(t)
	_, reader := meterWorker(t, h, h.conv)
	got := series(t, reader)
	for _, o := range worker.Outcomes() {
		for _, typ := range []string{"joiner", "mover", "leaver", "rehire", "suspend", "update"} {
			k := "jml_convergence{outcome=" + o + ",type=" + typ + "}"
			if v, ok := got[k]; !ok || v != 0 {
				t.Errorf("%s = %d, %v; want 0 from the start", k, v, ok)
			}
		}
	}
	for _, k := range []string{"jml_dlq_messages{}", "jml_consumer_redelivered{}", "jml_unresolved_events{source=generic}",
		"jml_unresolved_events{source=okta}", "jml_dlq_depth{}", "jml_due_queue_size{}", "jml_consumer_pending{}"} {
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("%s = %d, %v; want 0 from the start", k, v, ok)
		}
	}
}

// waitingConverger answers RetryLater (a pause, a held brake) until released.
type waitingConverger struct {
	inner    worker.Converger
	released atomic.Bool
	waits    atomic.Int32
}

func (c *waitingConverger) Converge(ctx context.Context, rec state.PersonRecord, check converge.LeaseCheck) (converge.Result, error) {
	if !c.released.Load() {
		c.waits.Add(1)
		return converge.Result{Outcome: converge.OutcomeHalted}, &converge.RetryLater{Delay: 50 * time.Millisecond, Reason: "mutations are paused (jml resume)"}
	}
	return c.inner.Converge(ctx, rec, check)
}

func TestWaitsAreCountedAsWaitingNotErrors(t *testing.T) {
	h := start(t)
	h.stop(t)
	cv := &waitingConverger{inner: h.conv}
	w, reader := meterWorker(t, h, cv)
	runWorker(t, w)
	const who = "jane.doe@acme.test"
	h.publish(t, "msg_waiting", who)
	eventually(t, "several waits", func() bool { return cv.waits.Load() >= 3 })
	got := series(t, reader)
	if v := got["jml_convergence{outcome=waiting,type=leaver}"]; v < 3 {
		t.Errorf("waiting = %d, want >= 3 (one per paused delivery)", v)
	}
	if v := got["jml_convergence{outcome=error,type=leaver}"]; v != 0 {
		t.Errorf("error = %d while only waiting: JMLConvergenceErrors would fire during a pause", v)
	}
	if v := got["jml_consumer_redelivered{}"]; v < 2 {
		t.Errorf("redelivered = %d, want >= 2", v)
	}
	cv.released.Store(true)
	eventually(t, who+" is removed after the wait", func() bool { _, ok := h.sb.Member(who); return !ok })
	eventually(t, "applied is counted", func() bool { return series(t, reader)["jml_convergence{outcome=applied,type=leaver}"] == 1 })
	if v := series(t, reader)["jml_convergence{outcome=error,type=leaver}"]; v != 0 {
		t.Errorf("error = %d, want 0", v)
	}
}

func TestQueueGaugesFollowJetStream(t *testing.T) {
	h := start(t)
	h.stop(t)
	w, reader := meterWorker(t, h, h.conv)
	// The consumer exists and nobody consumes: published events are pending.
	if _, err := h.js.CreateOrUpdateConsumer(context.Background(), events.StreamEvents, worker.ConsumerConfig()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p1", "p2", "p3"} {
		h.publish(t, "msg_"+id, id+"@acme.test")
	}
	eventually(t, "3 pending", func() bool { return series(t, reader)["jml_consumer_pending{}"] == 3 })

	// A future-dated change is scheduled in the due queue.
	at := time.Now().Add(24 * time.Hour)
	h.publishEvent(t, events.Event{ID: "msg_future", Source: "generic", Type: events.Leaver, OccurredAt: time.Now().UTC(), EffectiveAt: &at,
		Person: events.Person{Email: "later@acme.test", Status: events.Terminated}})
	// An undecodable message is dead-lettered at once.
	nc := natsConn(t, h.js)
	if err := nc.Publish(events.SubjectPrefix+".generic.leaver", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	eventually(t, "queue gauges", func() bool {
		s := series(t, reader)
		return s["jml_consumer_pending{}"] == 0 && s["jml_dlq_depth{}"] == 1 && s["jml_due_queue_size{}"] == 1
	})
	if v := series(t, reader)["jml_dlq_messages{}"]; v != 1 {
		t.Errorf("jml_dlq_messages = %d, want 1", v)
	}
}

// natsConn returns the connection under js.
func natsConn(t *testing.T, js jetstream.JetStream) *nats.Conn {
	t.Helper()
	nc := js.Conn()
	if nc == nil {
		t.Fatal("no NATS connection")
	}
	return nc
}
