package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Outcomes of jml_convergence_total besides the converge.Outcome values.
const (
	// OutcomeWaiting: convergence asked to come back later
	// (Result.RequeueAfter: paused, held by the brakes, Sentry's invite
	// quota, a token revocation to retry).
	// The message is redelivered after the delay; it is not a failure.
	OutcomeWaiting = "waiting"
	// OutcomeBusy: another replica holds the person's lease (before or during
	// the convergence); the message is redelivered shortly.
	OutcomeBusy = "busy"
	// OutcomeError: a real failure, retried with backoff (dead-lettered when
	// permanent).
	OutcomeError = "error"
)

// Outcomes lists every outcome label jml_convergence_total can carry; each is
// exported at zero from the start for every event type.
func Outcomes() []string {
	return []string{
		string(converge.OutcomeInSync), string(converge.OutcomeApplied), string(converge.OutcomeProtected),
		string(converge.OutcomeDisputed), string(converge.OutcomeNeedsHuman), string(converge.OutcomeHalted),
		OutcomeWaiting, OutcomeBusy, OutcomeError, "deferred", "duplicate", "scheduled", "unresolved",
	}
}

// eventTypes are the type label values of jml_convergence_total.
func eventTypes() []events.Type {
	return []events.Type{events.Joiner, events.Mover, events.Leaver, events.Rehire, events.Suspend, events.Update}
}

// countedOutcome is the jml_convergence_total outcome for what process
// returned: a lease lost to another replica is told apart from failures.
// (Waits are no errors: process counts them as OutcomeWaiting.)
func countedOutcome(outcome string, err error) string {
	switch {
	case err == nil:
		return outcome
	case errors.Is(err, state.ErrLeaseLost), errors.Is(err, state.ErrLeaseHeld):
		return OutcomeBusy
	}
	return outcome
}

// zeroInit exports every series whose labels are known at zero, so rates and
// alerts see them from the first scrape (Prometheus: avoid missing metrics).
func (w *Worker) zeroInit(ctx context.Context) {
	for _, o := range Outcomes() {
		for _, t := range eventTypes() {
			w.outcomes.Add(ctx, 0, metric.WithAttributes(attribute.String("outcome", o), attribute.String("type", string(t))))
		}
	}
	w.dlq.Add(ctx, 0)
	w.redeliver.Add(ctx, 0)
	for _, s := range w.o.Sources {
		w.unresolved.Add(ctx, 0, metric.WithAttributes(attribute.String("source", s)))
	}
}

// streamInfoer is the part of jetstream.JetStream the queue gauges read.
type streamInfoer interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// dueCounter counts the scheduled future-dated changes.
type dueCounter interface {
	Len(ctx context.Context) (int, error)
}

// queueGauges exports the queue depths as observable gauges: the jml-worker
// consumer's pending messages (jml_consumer_pending), the dead letters in
// JML_DLQ (jml_dlq_depth) and the due queue (jml_due_queue_size). A reading is
// taken at collection time, reused for ttl, and bounded by a timeout so a
// scrape never hangs on NATS; a failed reading keeps the last good value.
type queueGauges struct {
	js  streamInfoer
	due dueCounter
	ttl time.Duration
	log *slog.Logger

	mu        sync.Mutex
	readAt    time.Time
	pending   int64
	dlqDepth  int64
	dueSize   int64
	hasDue    bool
	readOnce  bool
	lastError string
}

func newQueueGauges(m metric.Meter, js streamInfoer, due state.DueQueue, ttl time.Duration, log *slog.Logger) (*queueGauges, error) {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	g := &queueGauges{js: js, ttl: ttl, log: log}
	if due != nil {
		g.due = due
	}
	pending, err := m.Int64ObservableGauge("jml_consumer_pending",
		metric.WithDescription("Messages of JML_EVENTS not yet delivered to the jml-worker consumer (its NumPending)"))
	if err != nil {
		return nil, err
	}
	depth, err := m.Int64ObservableGauge("jml_dlq_depth",
		metric.WithDescription("Messages in the JML_DLQ stream (dead letters waiting for an operator)"))
	if err != nil {
		return nil, err
	}
	dueSize, err := m.Int64ObservableGauge("jml_due_queue_size",
		metric.WithDescription("Future-dated changes scheduled in the due queue"))
	if err != nil {
		return nil, err
	}
	if _, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		r := g.read(ctx)
		o.ObserveInt64(pending, r.pending)
		o.ObserveInt64(depth, r.dlqDepth)
		if r.hasDue {
			o.ObserveInt64(dueSize, r.dueSize)
		}
		return nil
	}, pending, depth, dueSize); err != nil {
		return nil, err
	}
	return g, nil
}

// queueReading is one reading of the queue gauges.
type queueReading struct {
	pending, dlqDepth, dueSize int64
	hasDue                     bool
}

// read returns the cached reading, refreshing it when older than ttl.
func (g *queueGauges) read(ctx context.Context) queueReading {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.readOnce || time.Since(g.readAt) >= g.ttl {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		err := g.refresh(ctx)
		cancel()
		g.readAt, g.readOnce = time.Now(), true
		if err != nil && err.Error() != g.lastError {
			g.log.WarnContext(ctx, "queue gauges: reading failed, exporting the last values", "err", err)
		}
		g.lastError = ""
		if err != nil {
			g.lastError = err.Error()
		}
	}
	return queueReading{pending: g.pending, dlqDepth: g.dlqDepth, dueSize: g.dueSize, hasDue: g.hasDue}
}

// refresh reads the three depths; each failure leaves its value as it was.
func (g *queueGauges) refresh(ctx context.Context) error {
	var errs []error
	if st, err := g.js.Stream(ctx, events.StreamEvents); err != nil {
		errs = append(errs, fmt.Errorf("stream %s: %w", events.StreamEvents, err))
	} else if c, err := st.Consumer(ctx, events.ConsumerWorker); errors.Is(err, jetstream.ErrConsumerNotFound) {
		// No worker has created the consumer yet: nothing was handed out.
		g.pending = 0
	} else if err != nil {
		errs = append(errs, fmt.Errorf("consumer %s: %w", events.ConsumerWorker, err))
	} else if info, err := c.Info(ctx); err != nil {
		errs = append(errs, fmt.Errorf("consumer %s info: %w", events.ConsumerWorker, err))
	} else {
		g.pending = int64(info.NumPending)
	}
	if st, err := g.js.Stream(ctx, events.StreamDLQ); err != nil {
		errs = append(errs, fmt.Errorf("stream %s: %w", events.StreamDLQ, err))
	} else if info, err := st.Info(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stream %s info: %w", events.StreamDLQ, err))
	} else {
		g.dlqDepth = int64(info.State.Msgs)
	}
	if g.due != nil {
		if n, err := g.due.Len(ctx); err != nil {
			errs = append(errs, fmt.Errorf("due queue: %w", err))
		} else {
			g.dueSize, g.hasDue = int64(n), true
		}
	}
	return errors.Join(errs...)
}
