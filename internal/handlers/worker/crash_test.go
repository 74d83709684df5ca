package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// crashOnce converges, then dies (panics) before the worker can ack — once per
// person: the Sentry calls were made, the message was not acknowledged.
type crashOnce struct {
	inner worker.Converger
	mu    sync.Mutex
	done  map[string]bool
	n     int
}

func (c *crashOnce) Converge(ctx context.Context, rec state.PersonRecord, check converge.LeaseCheck) (converge.Result, error) {
	res, err := c.inner.Converge(ctx, rec, check)
	c.mu.Lock()
	first := !c.done[rec.Key]
	c.done[rec.Key] = true
	if first {
		c.n++
	}
	c.mu.Unlock()
	if first && err == nil {
		panic("crash between the Sentry call and the ack")
	}
	return res, err
}

// TestCrashBetweenSentryCallAndAck: the redelivered event applies nothing twice.
func TestCrashBetweenSentryCallAndAck(t *testing.T) {
	h := startWrapped(t, func(inner worker.Converger) worker.Converger {
		return &crashOnce{inner: inner, done: map[string]bool{}}
	})
	now := time.Now().UTC()
	leaver := events.Event{ID: "crash-leaver", Source: "generic", Type: events.Leaver, OccurredAt: now, ReceivedAt: now,
		Person: events.Person{Email: "jane.doe@acme.test", Status: events.Terminated}}
	joiner := events.Event{ID: "crash-joiner", Source: "generic", Type: events.Joiner, OccurredAt: now, ReceivedAt: now,
		Person: events.Person{Email: "zoe.new@acme.test", Status: events.Active}}
	h.publishEvent(t, leaver)
	h.publishEvent(t, joiner)
	h.quiet(t)
	st := h.sb.Stats()
	if n := st.Mutations["member.remove"]["jane.doe@acme.test"]; n != 1 {
		t.Fatalf("jane removed %d times, want 1", n)
	}
	if n := st.Mutations["member.invite"]["zoe.new@acme.test"]; n != 1 {
		t.Fatalf("zoe invited %d times, want 1", n)
	}
	if _, ok := h.sb.Member("zoe.new@acme.test"); !ok {
		t.Fatal("zoe not invited")
	}
	// Both messages were delivered twice (the crash, then the redelivery).
	cons, _ := h.js.Consumer(context.Background(), events.StreamEvents, events.ConsumerWorker)
	info, _ := cons.Info(context.Background())
	if info.NumRedelivered != 0 || info.Delivered.Consumer < 4 {
		t.Fatalf("deliveries: %+v (want 4 deliveries of 2 messages, none left redelivering)", info.Delivered)
	}
}
