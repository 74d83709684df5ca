package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// leaseDeduper is a coordination store that checks an event's dedupe
// record when taking a person's lease and records it when releasing the
// lease, one round trip each (redisstate).
type leaseDeduper interface {
	AcquireUnseen(ctx context.Context, key, owner string, ttl time.Duration, dedupeKey string) (l state.Lease, seen bool, err error)
	ReleaseSeen(ctx context.Context, l state.Lease, dedupeKey string, ttl time.Duration) error
}

// Converger plans and applies one person's record (*converge.Converger);
// the worker reconciles by key through it (converge.Reconciler).
type Converger = converge.RecordConverger

// Options wire a Worker.
type Options struct {
	JS        jetstream.JetStream
	Dedupe    state.Deduper
	Leases    state.Leaser
	Directory state.Directory
	Converger Converger
	// Due holds future-dated changes until their time (optional: without it a
	// future-dated event is redelivered hourly until due).
	Due state.DueQueue
	// Resolver re-reads a person from the provider's API (thin payloads, and
	// destructive changes from unsigned sources). Optional.
	Resolver Resolver
	// Unresolved records events whose person cannot be identified. Optional.
	Unresolved UnresolvedSink
	// Alert raises an operator alert (dlq_growth). Optional.
	Alert func(ctx context.Context, kind, person, summary string)
	// ResolveErrors are the Resolver's sentinels.
	ResolveErrors struct{ NotConfigured, Unknown error }
	// IDSpaces says which id space each source's HR ids live in (the zero
	// value: the generic source and the roster share one, every other source
	// has its own).
	IDSpaces state.IDSpaces
	// MaxClockSkew is how far ahead of Now an event's time may be when it is
	// applied (default events.DefaultMaxClockSkew). The receiver refuses
	// later ones; an event accepted before it did is applied at Now, so it
	// cannot outrank every later event for its person.
	MaxClockSkew time.Duration
	// Sources are the event sources whose per-source series
	// (jml_unresolved_events_total) are exported at zero from the start.
	Sources []string
	// GaugeTTL is how long the queue gauges (consumer pending, DLQ depth, due
	// queue size) reuse a reading before asking JetStream again (default 10s).
	GaugeTTL time.Duration
	// Owner identifies this replica in leases (hostname:pid).
	Owner string
	// Concurrency is the number of events handled at once (default 16).
	Concurrency int
	// MaxPermanentDeliveries: a permanent failure is dead-lettered once the message
	// was delivered this many times (default 5).
	MaxPermanentDeliveries int
	LeaseTTL               time.Duration // default 30s
	AckWait                time.Duration // redelivery after a silent worker; default 30s
	DedupeTTL              time.Duration // default 72h
	Logger                 *slog.Logger
	TracerProvider         trace.TracerProvider
	MeterProvider          metric.MeterProvider
	Propagator             propagation.TextMapPropagator
	Now                    func() time.Time
}

// Worker consumes JML_EVENTS.
type Worker struct {
	o          Options
	tracer     trace.Tracer
	prop       propagation.TextMapPropagator
	outcomes   metric.Int64Counter
	revoke     metric.Float64Histogram
	dlq        metric.Int64Counter
	unresolved metric.Int64Counter
	redeliver  metric.Int64Counter
	gauges     *queueGauges
	// recon reconciles a person by key under the lease the worker holds.
	recon *converge.Reconciler

	// failures counts real failures per stream sequence on this replica. The
	// delivery count is no measure of them: "person busy on another replica"
	// naks and crash redeliveries raise it too.
	failMu   sync.Mutex
	failures map[uint64]int
}

// failed records one more failure of the message at seq and returns the count.
func (w *Worker) failed(seq uint64) int {
	w.failMu.Lock()
	defer w.failMu.Unlock()
	if len(w.failures) > 100_000 { // entries of messages acked elsewhere
		clear(w.failures)
	}
	w.failures[seq]++
	return w.failures[seq]
}

func (w *Worker) settled(seq uint64) {
	w.failMu.Lock()
	delete(w.failures, seq)
	w.failMu.Unlock()
}

// New validates o.
func New(o Options) (*Worker, error) {
	if o.JS == nil || o.Dedupe == nil || o.Leases == nil || o.Directory == nil || o.Converger == nil {
		return nil, errors.New("worker: JS, Dedupe, Leases, Directory and Converger are required")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.MaxPermanentDeliveries <= 0 {
		o.MaxPermanentDeliveries = 5
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.DedupeTTL <= 0 {
		o.DedupeTTL = 72 * time.Hour
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = events.DefaultMaxClockSkew
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Owner == "" {
		o.Owner = "worker"
	}
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	recon, err := converge.NewReconciler(converge.ReconcilerOptions{Converger: o.Converger, Directory: o.Directory,
		Leases: o.Leases, Owner: o.Owner, LeaseTTL: o.LeaseTTL})
	if err != nil {
		return nil, err
	}
	w := &Worker{o: o, tracer: tp.Tracer("github.com/sentry-jml/sentry-jml/internal/handlers/worker"), prop: o.Propagator,
		failures: map[uint64]int{}, recon: recon}
	if w.prop == nil {
		w.prop = otel.GetTextMapPropagator()
	}
	m := mp.Meter("github.com/sentry-jml/sentry-jml/internal/handlers/worker")
	if w.outcomes, err = m.Int64Counter("jml_convergence", metric.WithDescription("Processed events by outcome")); err != nil {
		return nil, err
	}
	if w.revoke, err = m.Float64Histogram("jml_time_to_revoke_seconds", metric.WithUnit("s"),
		metric.WithDescription("Webhook received to Sentry membership removed (the 5-second promise)")); err != nil {
		return nil, err
	}
	if w.dlq, err = m.Int64Counter("jml_dlq_messages", metric.WithDescription("Messages dead-lettered to JML_DLQ")); err != nil {
		return nil, err
	}
	if w.unresolved, err = m.Int64Counter("jml_unresolved_events", metric.WithDescription("Events whose person could not be identified (jml unresolved)")); err != nil {
		return nil, err
	}
	if w.redeliver, err = m.Int64Counter("jml_consumer_redelivered",
		metric.WithDescription("Deliveries of a jml-worker message after its first (naks, waits, crashed or slow workers)")); err != nil {
		return nil, err
	}
	if w.gauges, err = newQueueGauges(m, o.JS, o.Due, o.GaugeTTL, o.Logger); err != nil {
		return nil, err
	}
	w.zeroInit(context.Background())
	return w, nil
}

// Resolver re-reads a person from a provider's API. Errors: ErrNotConfigured
// (no API for the source), ErrUnresolvable (unknown to the provider), anything
// else is transient. The worker matches them with errors.Is on the sentinels
// it is given in Options.ResolveErrors.
type Resolver interface {
	Resolve(ctx context.Context, source, personID string) (events.Person, error)
}

// UnresolvedSink lists events whose person could not be identified.
type UnresolvedSink interface {
	RecordUnresolved(ctx context.Context, ev events.Event, reason string) error
}

// ResolveOutcome classifies a resolver error.
type ResolveOutcome int

// Resolver error classes.
const (
	Resolved ResolveOutcome = iota
	ResolveTransient
	ResolveNotConfigured
	ResolveUnknownPerson
)

// unsignedSources authenticate with a static token only: before a destructive
// change the person is re-read from the provider when an API is configured.
func unsignedSource(source string) bool {
	return source == "personio" || source == "rippling"
}

// ConsumerConfig is the durable consumer the worker uses (AckWait 30s).
func ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       events.ConsumerWorker,
		Description:   "sentry-jml workers: converge people from lifecycle events",
		FilterSubject: events.SubjectPrefix + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1, // transient failures never use up deliveries; permanent ones are dead-lettered by the worker
		MaxAckPending: 1024,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Run consumes until ctx is cancelled, then stops pulling, lets in-flight events
// finish and returns.
func (w *Worker) Run(ctx context.Context) error {
	cfg := ConsumerConfig()
	cfg.AckWait = w.o.AckWait
	cons, err := w.o.JS.CreateOrUpdateConsumer(ctx, events.StreamEvents, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("worker consumer: %w", err)
	}
	sem := make(chan struct{}, w.o.Concurrency)
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			w.Handle(context.WithoutCancel(ctx), m)
		}()
	}, jetstream.PullMaxMessages(2*w.o.Concurrency), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, nats.ErrConnectionClosed) {
			w.o.Logger.WarnContext(ctx, "consume", "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("worker consume: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	wg.Wait()
	return nil
}

// Handle processes one message and acks, naks or terms it. It never panics
// outward: a panic is recovered and the message redelivered later.
func (w *Worker) Handle(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		w.o.Logger.ErrorContext(ctx, "message without metadata", "err", err)
		_ = m.Term()
		return
	}
	ctx = w.prop.Extract(ctx, events.HeaderCarrier(m.Headers()))
	ctx, span := w.tracer.Start(ctx, "process "+m.Subject(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(m.Subject()),
			semconv.MessagingConsumerGroupName(events.ConsumerWorker),
			attribute.Int64("messaging.nats.stream_sequence", int64(md.Sequence.Stream)),
			attribute.Int64("jml.deliveries", int64(md.NumDelivered)),
		))
	defer span.End()
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("panic: %v", r)
			span.RecordError(err)
			span.SetStatus(codes.Error, "panic")
			w.o.Logger.ErrorContext(ctx, "panic while handling event", "err", err, "seq", md.Sequence.Stream)
			_ = m.NakWithDelay(backoff(md.NumDelivered))
		}
	}()

	// A message that can never be processed goes to the DLQ at once: too
	// large, undecodable, or carrying a source or id that would put an
	// unbounded string into a NATS subject, header or KV key (one such
	// protocol line makes the server close the shared connection).
	if n := len(m.Data()); n > events.MaxEventBytes {
		err := fmt.Errorf("%w: message of %d bytes exceeds %d", events.ErrInvalid, n, events.MaxEventBytes)
		span.RecordError(err)
		span.SetStatus(codes.Error, "oversized")
		w.deadLetter(ctx, m, md, err)
		return
	}
	ev, err := events.Unmarshal(m.Data())
	if err == nil {
		if cerr := events.CheckStored(ev); cerr != nil {
			err = fmt.Errorf("event refused: %w", cerr)
		}
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "undecodable")
		w.deadLetter(ctx, m, md, err)
		return
	}
	span.SetAttributes(semconv.MessagingMessageID(ev.MsgID()), attribute.String("jml.event.type", string(ev.Type)), attribute.String("jml.person", ev.Person.Key()))
	log := w.o.Logger.With("event_id", ev.ID, "source", ev.Source, "type", ev.Type, "person", ev.Person.Key(), "seq", md.Sequence.Stream)

	if md.NumDelivered > 1 {
		w.redeliver.Add(ctx, 1)
	}
	v, err := w.process(ctx, m, md, ev, log)
	outcome := countedOutcome(v.outcome, err)
	w.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome), attribute.String("type", string(ev.Type))))
	switch {
	case err == nil && v.after <= 0:
		w.settled(md.Sequence.Stream)
		if aerr := m.Ack(); aerr != nil {
			log.WarnContext(ctx, "ack failed; the event will be redelivered and deduplicated", "err", aerr)
		}
		return
	case err == nil:
		// A wait, not a failure: future-dated, the person busy on another
		// replica, or convergence asked to come back (pause, brakes,
		// invite quota).
		span.SetAttributes(attribute.String("jml.requeue_after", v.after.String()))
		if v.outcome == OutcomeWaiting {
			log.WarnContext(ctx, "convergence waits", "reason", v.reason, "retry_in", v.after.String())
		}
		_ = m.NakWithDelay(v.after)
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	if converge.IsTerminal(err) {
		// Retrying cannot help. An evidence record that could not be
		// written: the change was made, never acknowledge that silently;
		// the dead letter carries the record and raises an alert.
		log.ErrorContext(ctx, "terminal failure, dead-lettering the event", "err", err)
		w.settled(md.Sequence.Stream)
		w.deadLetter(ctx, m, md, err)
		return
	}
	n := w.failed(md.Sequence.Stream)
	if errors.Is(err, converge.ErrPermanent) && n >= w.o.MaxPermanentDeliveries {
		log.ErrorContext(ctx, "permanent failure, dead-lettering", "err", err, "failures", n, "deliveries", md.NumDelivered)
		w.settled(md.Sequence.Stream)
		w.deadLetter(ctx, m, md, err)
		return
	}
	d := backoff(uint64(n))
	log.WarnContext(ctx, "convergence failed, will retry", "err", err, "failures", n, "deliveries", md.NumDelivered, "retry_in", d.String())
	_ = m.NakWithDelay(d)
}

// unresolvedEvent lists an event nobody can be matched for (jml unresolved),
// counts it and acknowledges it.
func (w *Worker) unresolvedEvent(ctx context.Context, ev events.Event, dedupeKey, reason string, log *slog.Logger) (verdict, error) {
	if w.o.Unresolved != nil {
		if err := w.o.Unresolved.RecordUnresolved(ctx, ev, reason); err != nil {
			return verdict{outcome: "error"}, fmt.Errorf("record unresolved event: %w", err)
		}
	}
	w.unresolved.Add(ctx, 1, metric.WithAttributes(attribute.String("source", ev.Source)))
	log.WarnContext(ctx, "unresolved event: person has no email yet", "reason", reason)
	_, _ = w.o.Dedupe.MarkSeen(ctx, dedupeKey, w.o.DedupeTTL)
	return verdict{outcome: "unresolved"}, nil
}

// personKey finds the directory person an event is about
// (state.ResolvePerson): HR ids in their source's id space.
func (w *Worker) personKey(ctx context.Context, ev events.Event) (state.Resolution, error) {
	src, id := ev.SourceRef()
	return state.ResolveNewPerson(ctx, w.o.Directory, w.o.IDSpaces, src, id, ev.Person)
}

// verdict is what handling one event decided: the outcome counted, and a
// wait (redeliver after) when positive. A wait is not a failure.
type verdict struct {
	outcome string
	after   time.Duration
	reason  string
}

// process handles one decoded event: identify the person, then either
// schedule a future-dated change, or, under the person's lease, apply the
// event to the directory and reconcile that person's key.
func (w *Worker) process(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, ev events.Event, log *slog.Logger) (verdict, error) {
	now := w.o.Now()
	future := ev.EffectiveAt != nil && ev.EffectiveAt.After(now)
	dedupeKey := "evt:" + ev.MsgID()
	if future {
		dedupeKey += ":scheduled"
	}
	if future && w.seen(ctx, dedupeKey, log) {
		return verdict{outcome: "duplicate"}, nil
	}
	// A convergence request from the audit-log follower carries no HR data:
	// it names the person by email only, and converges what the directory
	// already wants for them (never creating a person).
	audit := ev.Source == events.SourceSentryAudit
	var who state.Resolution
	var err error
	if audit {
		who, err = w.auditPerson(ctx, ev)
	} else {
		who, err = w.personKey(ctx, ev)
	}
	if err != nil {
		return verdict{outcome: "error"}, err
	}
	if audit && who.Key == "" {
		// Nobody the directory knows: a member the daemon does not manage
		// (reconcile's orphans policy covers those).
		log.InfoContext(ctx, "audit entry about a person the directory does not know; left to reconcile's orphans policy", "audit_event", ev.OutOfBand.Event)
		_, _ = w.o.Dedupe.MarkSeen(ctx, dedupeKey, w.o.DedupeTTL)
		return verdict{outcome: "not_managed"}, nil
	}
	if who.Key == "" {
		if w.seen(ctx, dedupeKey, log) {
			return verdict{outcome: "duplicate"}, nil
		}
		return w.unresolvedEvent(ctx, ev, dedupeKey, "no email or id, and "+who.LinkSource+" id "+who.LinkID+" is linked to nobody yet", log)
	}
	version := w.version(ctx, ev, md, now, future, log)
	if future {
		return w.schedule(ctx, ev, who.Key, version, dedupeKey, log)
	}
	h, v, err := w.hold(ctx, m, who.Key, dedupeKey, log)
	if h == nil {
		return v, err
	}
	defer h.release(ctx, log)
	ev, rec, err := w.applyEvent(ctx, ev, who, version, log)
	if err != nil {
		return verdict{outcome: "error"}, err
	}
	if reason := unidentifiable(ev, rec); reason != "" {
		// Nobody can be matched in Sentry (no email), or a joiner nobody
		// knows to be active: list it for an operator (jml unresolved).
		v, err := w.unresolvedEvent(ctx, ev, dedupeKey, reason, log)
		if err == nil {
			h.done(ctx, log) // only once it is listed: a failed listing is retried
		}
		return v, err
	}
	trig := state.Trigger{Source: ev.Source, EventID: ev.ID, OccurredAt: ev.OccurredAt.UTC(), ReceivedAt: ev.ReceivedAt.UTC()}
	if ev.EffectiveAt != nil {
		trig.EffectiveAt = ev.EffectiveAt.UTC()
	}
	tctx := state.WithTrigger(ctx, trig)
	if ev.OutOfBand != nil {
		// Hand-made: convergence applies policy.out_of_band and names the actor.
		tctx = converge.WithOutOfBand(tctx, *ev.OutOfBand)
	}
	rctx := converge.WithLease(tctx, converge.Held{Key: who.Key, Record: &rec,
		Check: func(ctx context.Context) error { return h.held.check(ctx, w.o.Leases) }})
	res, err := w.recon.Reconcile(rctx, who.Key)
	if err != nil {
		return verdict{outcome: "error"}, err
	}
	if res.Removed && !ev.ReceivedAt.IsZero() {
		w.revoke.Record(ctx, w.o.Now().Sub(ev.ReceivedAt).Seconds(), metric.WithAttributes(attribute.String("source", ev.Source)))
	}
	if res.RequeueAfter > 0 {
		return verdict{outcome: OutcomeWaiting, after: res.RequeueAfter, reason: res.Reason}, nil
	}
	log.InfoContext(ctx, "converged", "outcome", res.Outcome, "reason", res.Reason, "steps", len(res.Steps))
	h.done(ctx, log)
	return verdict{outcome: string(res.Outcome)}, nil
}

// seen reports an event already processed. Checked under the person's lease,
// where it is authoritative: the first delivery marks the event seen before
// it releases the lease.
func (w *Worker) seen(ctx context.Context, dedupeKey string, log *slog.Logger) bool {
	seen, err := w.o.Dedupe.Seen(ctx, dedupeKey)
	if err != nil {
		// Dedupe is an optimisation: without it convergence is still idempotent.
		log.WarnContext(ctx, "dedupe unavailable, processing anyway", "err", err)
		return false
	}
	if seen {
		log.InfoContext(ctx, "duplicate event, already processed")
	}
	return seen
}

// version is the event's place in the person's history: effective_at for a
// future-dated change (so a mover between scheduling and effect does not
// outrank it), never far ahead of the clock.
func (w *Worker) version(ctx context.Context, ev events.Event, md *jetstream.MsgMetadata, now time.Time, future bool, log *slog.Logger) state.Version {
	version := state.Version{OccurredAt: ev.OccurredAt, Source: ev.Source, Seq: md.Sequence.Stream}
	if ev.EffectiveAt != nil && ev.EffectiveAt.After(version.OccurredAt) {
		version.OccurredAt = *ev.EffectiveAt
	}
	if !future && version.OccurredAt.After(now.Add(w.o.MaxClockSkew)) {
		// Accepted before event times were bounded (or a clock far off): a
		// version in the far future would pin the person.
		log.WarnContext(ctx, "event time far ahead of the clock, applied as now", "occurred_at", version.OccurredAt)
		version.OccurredAt = now.UTC()
	}
	return version
}

// schedule holds a future-dated change in the due queue until its time (or,
// without one, redelivers the event hourly until due).
func (w *Worker) schedule(ctx context.Context, ev events.Event, key string, version state.Version, dedupeKey string, log *slog.Logger) (verdict, error) {
	if w.o.Due == nil {
		d := min(ev.EffectiveAt.Sub(w.o.Now()), time.Hour)
		log.InfoContext(ctx, "future-dated event, deferred", "effective_at", ev.EffectiveAt, "retry_in", d.String())
		return verdict{outcome: "deferred", after: d, reason: "effective at " + ev.EffectiveAt.Format(time.RFC3339)}, nil
	}
	raw, _ := events.Marshal(ev)
	// Stored in W3C form whatever OTEL_PROPAGATORS says: the release may
	// come after a configuration change.
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	ok, err := w.o.Due.Schedule(ctx, state.Due{ID: ev.MsgID(), PersonKey: key, Field: changedField(ev.Person),
		Version: version, Event: raw, EffectiveAt: *ev.EffectiveAt, Trace: carrier})
	if err != nil {
		return verdict{outcome: "error"}, fmt.Errorf("schedule future-dated change: %w", err)
	}
	log.InfoContext(ctx, "future-dated change scheduled", "effective_at", ev.EffectiveAt, "scheduled", ok)
	_, _ = w.o.Dedupe.MarkSeen(ctx, dedupeKey, w.o.DedupeTTL)
	return verdict{outcome: "scheduled"}, nil
}

// applyEvent applies the event to the directory under the person's lease:
// it cancels scheduled changes the event replaces, fills a thin payload from
// the provider, merges the person (versioned: older news changes nothing)
// and writes the links that find the person again. It writes nothing that
// would not change: the email link only when the record does not say it
// already points here, the person's id only once per id space.
func (w *Worker) applyEvent(ctx context.Context, ev events.Event, who state.Resolution, version state.Version, log *slog.Logger) (events.Event, state.PersonRecord, error) {
	key := who.Key
	// An audit-log request applies nothing: it reconciles what the directory
	// already wants for the person.
	audit := ev.Source == events.SourceSentryAudit
	if w.o.Due != nil {
		switch {
		case ev.Type == events.Rehire:
			// A rehire cancels every scheduled change of the person.
			if err := w.o.Due.Cancel(ctx, key, ""); err != nil {
				return ev, state.PersonRecord{}, fmt.Errorf("cancel scheduled changes: %w", err)
			}
		case ev.Person.Status != "" && ev.EffectiveAt == nil:
			// A later event that sets the status replaces a scheduled status change;
			// an unrelated event (a mover's department) does not.
			if err := w.o.Due.Cancel(ctx, key, "status"); err != nil {
				return ev, state.PersonRecord{}, fmt.Errorf("cancel scheduled status change: %w", err)
			}
		}
	}
	ev, err := w.resolve(ctx, key, ev, log)
	if err != nil {
		return ev, state.PersonRecord{}, err
	}
	var rec state.PersonRecord
	var applied bool
	if audit {
		rec, err = w.o.Directory.Get(ctx, key)
	} else {
		rec, applied, err = w.o.Directory.Apply(ctx, key, ev.Person, version, ev.ID)
	}
	if err != nil {
		return ev, state.PersonRecord{}, fmt.Errorf("directory: %w", err)
	}
	email := strings.ToLower(ev.Person.Email)
	linked := false
	switch {
	case audit:
		// Nothing to apply; the stored desired state is reconciled.
	case !applied:
		log.InfoContext(ctx, "nothing new for the directory (older, or outranked by the field's owning source); converging the stored desired state", "stored_event", rec.LastEventID)
	case email != "" && !who.EmailLinked && rec.EmailLink != email:
		// The email link finds the person for events from other sources
		// and for operators (`jml plan --email`). It was found pointing
		// here already when EmailLinked, and the record says so when an
		// earlier event of this person wrote it.
		if err := w.o.Directory.Link(ctx, "email", email, key); err != nil {
			log.WarnContext(ctx, "email link", "err", err)
		} else {
			linked = true
		}
	}
	if who.LinkID != "" {
		// First event of this (id space or IdP, id): later ones, even thin
		// ones with the id alone, find the same person.
		if err := w.o.Directory.Link(ctx, who.LinkSource, who.LinkID, key); err != nil {
			log.WarnContext(ctx, "source link", "source", who.LinkSource, "err", err)
		}
	}
	_, idsChanged := who.RecordIDs(rec)
	if (idsChanged || linked) && rec.Key != "" {
		// The person's id in this space, for roster --full and the
		// recycled-address check (once per person and space), and the
		// email the link was written for: one write.
		updated, err := w.o.Directory.Update(ctx, key, func(r state.PersonRecord) (state.PersonRecord, error) {
			r, _ = who.RecordIDs(r)
			if linked || who.EmailLinked && email != "" {
				r.EmailLink = email
			}
			return r, nil
		})
		if err != nil {
			log.WarnContext(ctx, "record the person's id and email link", "space", who.Space, "err", err)
		} else {
			rec = updated
		}
	}
	return ev, rec, nil
}

// unidentifiable says why an applied event cannot be converged ("" when it
// can): no email to match a Sentry member by, or a joiner whose payload does
// not say the person is active.
func unidentifiable(ev events.Event, rec state.PersonRecord) string {
	up := strings.ToUpper(ev.Source)
	switch {
	case rec.Person.Email == "":
		return "no email for " + rec.Key + " (thin payload; set JML_SOURCE_" + up + "_API_URL/_API_TOKEN to re-read people)"
	case rec.Person.Status == "" && (ev.Type == events.Joiner || ev.Type == events.Rehire):
		// BambooHR sends no status and no provider API is there to re-read
		// it: converging would find nothing to do, nobody would be invited.
		return ev.Source + " " + string(ev.Type) + " without a status for " + rec.Key +
			": the payload does not say the person is active and no provider API is configured to re-read it, so nobody was invited (set JML_SOURCE_" + up + "_API_URL/_API_TOKEN)"
	}
	return ""
}

// held is the person's lease taken for one event, with the event's dedupe
// record: a store that checks the dedupe record with the lease (Redis)
// answers both in one round trip, and records the event when releasing it.
type held struct {
	w         *Worker
	held      *heldLease
	fused     leaseDeduper // nil: dedupe is a separate record
	dedupeKey string
	mark      bool // mark the event processed on release (fused)
	stop      func()
}

// hold takes the person's lease for one event. A nil *held comes with the
// verdict: a duplicate, the person busy on another replica, or an error.
func (w *Worker) hold(ctx context.Context, m jetstream.Msg, key, dedupeKey string, log *slog.Logger) (*held, verdict, error) {
	fused, isFused := w.o.Leases.(leaseDeduper)
	var (
		lease state.Lease
		err   error
	)
	if isFused {
		var seen bool
		lease, seen, err = fused.AcquireUnseen(ctx, converge.LeaseKey(key), w.o.Owner, w.o.LeaseTTL, dedupeKey)
		if err == nil && seen {
			log.InfoContext(ctx, "duplicate event, already processed")
			return nil, verdict{outcome: "duplicate"}, nil
		}
	} else {
		lease, err = w.o.Leases.Acquire(ctx, converge.LeaseKey(key), w.o.Owner, w.o.LeaseTTL)
	}
	if errors.Is(err, state.ErrLeaseHeld) {
		return nil, verdict{outcome: OutcomeBusy, after: 250 * time.Millisecond, reason: "person busy on another replica"}, nil
	}
	if err != nil {
		return nil, verdict{outcome: "error"}, fmt.Errorf("acquire lease: %w", err)
	}
	h := &held{w: w, held: &heldLease{lease: lease}, dedupeKey: dedupeKey}
	if isFused {
		h.fused = fused
	}
	h.stop = w.keepAlive(ctx, m, h.held, log)
	if !isFused && w.seen(ctx, dedupeKey, log) {
		h.release(ctx, log)
		return nil, verdict{outcome: "duplicate"}, nil
	}
	return h, verdict{}, nil
}

// done marks the event processed: now, or (fused) when the lease goes.
func (h *held) done(ctx context.Context, log *slog.Logger) {
	if h.fused != nil {
		h.mark = true
		return
	}
	if _, err := h.w.o.Dedupe.MarkSeen(ctx, h.dedupeKey, h.w.o.DedupeTTL); err != nil {
		log.WarnContext(ctx, "dedupe mark failed; a redelivery would converge again (harmless)", "err", err)
	}
}

// release stops the renewals and releases the lease (recording the event
// as processed in the same round trip when fused and done).
func (h *held) release(ctx context.Context, log *slog.Logger) {
	h.stop()
	rctx := context.WithoutCancel(ctx)
	var err error
	if h.mark {
		err = h.fused.ReleaseSeen(rctx, h.held.get(), h.dedupeKey, h.w.o.DedupeTTL)
	} else {
		err = h.w.o.Leases.Release(rctx, h.held.get())
	}
	if err != nil {
		log.WarnContext(ctx, "lease release", "err", err, "dedupe_mark", h.mark)
	}
}

// auditPerson finds the directory person an audit-log request names by
// email: the email link, else the email-keyed record; Key is "" when the
// directory knows nobody with that email.
func (w *Worker) auditPerson(ctx context.Context, ev events.Event) (state.Resolution, error) {
	email := strings.ToLower(ev.Person.Email)
	key, err := w.o.Directory.Resolve(ctx, "email", email)
	if err == nil {
		return state.Resolution{Key: key, EmailLinked: true}, nil
	}
	if !errors.Is(err, state.ErrNotFound) {
		return state.Resolution{}, fmt.Errorf("resolve %s: %w", events.SourceSentryAudit, err)
	}
	if _, err := w.o.Directory.Get(ctx, "email:"+email); err == nil {
		return state.Resolution{Key: "email:" + email, EmailLinked: true}, nil
	} else if !errors.Is(err, state.ErrNotFound) {
		return state.Resolution{}, fmt.Errorf("resolve %s: %w", events.SourceSentryAudit, err)
	}
	return state.Resolution{}, nil
}

// resolve fills a thin payload from the provider's API, and re-reads the
// person before a destructive change from an unsigned source.
func (w *Worker) resolve(ctx context.Context, key string, ev events.Event, log *slog.Logger) (events.Event, error) {
	if w.o.Resolver == nil || ev.Source == "generic" || ev.Person.ID == "" {
		return ev, nil
	}
	destructive := ev.Person.Status == events.Terminated || ev.Person.Status == events.Suspended
	thin := ev.Person.Status == ""
	if ev.Person.Email == "" {
		if rec, err := w.o.Directory.Get(ctx, key); err != nil || rec.Person.Email == "" {
			thin = true
		}
	}
	if !thin && !(destructive && unsignedSource(ev.Source)) {
		return ev, nil
	}
	p, err := w.o.Resolver.Resolve(ctx, ev.Source, ev.Person.ID)
	switch w.classify(err) {
	case Resolved:
	case ResolveNotConfigured:
		return ev, nil
	case ResolveUnknownPerson:
		if destructive && unsignedSource(ev.Source) {
			// A 404 confirms nothing: the termination is not applied, and the
			// event is listed for an operator (jml unresolved).
			log.WarnContext(ctx, "provider does not know the person; termination from an unsigned source not applied", "person_id", ev.Person.ID)
			if w.o.Unresolved != nil {
				if err := w.o.Unresolved.RecordUnresolved(ctx, ev, "termination not confirmed: the provider's API does not know the person"); err != nil {
					return ev, fmt.Errorf("record unconfirmed termination: %w", err)
				}
			}
			return unconfirmed(ev), nil
		}
		log.WarnContext(ctx, "provider does not know the person", "person_id", ev.Person.ID)
		return ev, nil
	default:
		return ev, fmt.Errorf("re-read person %s from %s: %w", ev.Person.ID, ev.Source, err)
	}
	if destructive && unsignedSource(ev.Source) && p.Status == events.Active {
		// An unsigned webhook claims a termination the provider does not
		// confirm: keep the rest, drop the status change.
		log.WarnContext(ctx, "provider says the person is active; termination from an unsigned source not applied")
		ev = unconfirmed(ev)
	}
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&ev.Person.Email, p.Email)
	fill(&ev.Person.Name, p.Name)
	fill(&ev.Person.Department, p.Department)
	fill(&ev.Person.Title, p.Title)
	fill(&ev.Person.ManagerEmail, p.ManagerEmail)
	if ev.Person.Status == "" {
		ev.Person.Status = p.Status // the provider's current status is authoritative
	}
	if ev.Person.Groups == nil && p.Groups != nil {
		ev.Person.Groups = p.Groups
	}
	return ev, nil
}

// unconfirmed keeps an event's profile and drops the status change the
// provider did not confirm.
func unconfirmed(ev events.Event) events.Event {
	ev.Person.Status = ""
	if ev.Type == events.Leaver || ev.Type == events.Suspend {
		ev.Type = events.Update
	}
	return ev
}

func (w *Worker) classify(err error) ResolveOutcome {
	if err == nil {
		return Resolved
	}
	if w.o.ResolveErrors.NotConfigured != nil && errors.Is(err, w.o.ResolveErrors.NotConfigured) {
		return ResolveNotConfigured
	}
	if w.o.ResolveErrors.Unknown != nil && errors.Is(err, w.o.ResolveErrors.Unknown) {
		return ResolveUnknownPerson
	}
	return ResolveTransient
}

// changedField names what a future-dated change sets, for replacement: the
// status when it carries one, else the profile.
func changedField(p events.Person) string {
	if p.Status != "" {
		return "status"
	}
	return "profile"
}

// keepAlive renews the lease and tells JetStream the message is in progress
// while a long convergence runs. The returned func stops it.
func (w *Worker) keepAlive(ctx context.Context, m jetstream.Msg, lease *heldLease, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.o.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = m.InProgress()
				l, err := w.o.Leases.Renew(ctx, lease.get(), w.o.LeaseTTL)
				if err != nil {
					log.WarnContext(ctx, "lease renewal failed; mutations will stop at the next check", "err", err)
					return
				}
				lease.renewed(l)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// deadLetter publishes m to JML_DLQ with the error and terms it. Everything
// in the dead letter that came from the message is bounded: the subject (a
// malformed one becomes jml.dlq.invalid), the copied headers and the body;
// Jml-Error keeps the first MaxHeaderValueLen bytes of the error. A dead
// letter that cannot be published is retried, so it must never be refused.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, cause error) {
	dm := nats.NewMsg(dlqSubject(m.Subject()))
	dm.Data = m.Data()
	if len(dm.Data) > events.MaxEventBytes {
		dm.Data = dm.Data[:events.MaxEventBytes]
		dm.Header.Set(events.HeaderTruncated, strconv.Itoa(len(m.Data())))
	}
	dropped, budget := 0, maxCopiedHeaders
	for k, v := range m.Headers() {
		// Nats-* headers are instructions to the server (msg id, expected stream):
		// copying them would make the dead-letter publish fail or be deduplicated.
		if strings.HasPrefix(strings.ToLower(k), "nats-") || strings.EqualFold(k, events.HeaderError) {
			continue
		}
		size := len(k)
		for _, x := range v {
			size += len(x)
		}
		if len(k) > 64 || size > events.MaxHeaderValueLen || size > budget {
			dropped++
			continue
		}
		budget -= size
		dm.Header[k] = v
	}
	if dropped > 0 {
		dm.Header.Set(events.HeaderDroppedHeaders, strconv.Itoa(dropped))
	}
	msg := events.HeaderValue(cause.Error(), events.MaxHeaderValueLen)
	dm.Header.Set(events.HeaderError, msg)
	dm.Header.Set(events.HeaderDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	dm.Header.Set(events.HeaderOrigSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	if _, err := w.o.JS.PublishMsg(ctx, dm, jetstream.WithMsgID("dlq:"+strconv.FormatUint(md.Sequence.Stream, 10))); err != nil {
		w.o.Logger.ErrorContext(ctx, "dead-letter publish failed; will retry", "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	w.dlq.Add(ctx, 1)
	short := events.HeaderValue(cause.Error(), 256)
	if w.o.Alert != nil {
		w.o.Alert(ctx, "dlq_growth", "", "a message was dead-lettered to JML_DLQ: "+short)
	}
	_ = m.TermWithReason("dead-lettered: " + short)
}

// maxCopiedHeaders bounds the headers a dead letter copies from its message.
const maxCopiedHeaders = 16 << 10

// dlqSubject is jml.dlq.<source>.<type> for jml.events.<source>.<type>, or
// jml.dlq.invalid when the rest of the subject is not two short, plain tokens.
func dlqSubject(subject string) string {
	rest, ok := strings.CutPrefix(subject, events.SubjectPrefix+".")
	if !ok || len(rest) > 2*events.MaxSourceLen {
		return events.DLQPrefix + ".invalid"
	}
	tokens := strings.Split(rest, ".")
	if len(tokens) != 2 {
		return events.DLQPrefix + ".invalid"
	}
	for _, t := range tokens {
		if events.CheckSource(t) != nil {
			return events.DLQPrefix + ".invalid"
		}
	}
	return events.DLQPrefix + "." + rest
}

// backoff grows with deliveries: 1s, 2s, 4s … capped at 2 minutes, jitter-free so
// the schedule is predictable in logs.
func backoff(delivered uint64) time.Duration {
	d := time.Second
	for i := uint64(1); i < delivered && d < 2*time.Minute; i++ {
		d *= 2
	}
	return min(d, 2*time.Minute)
}

// heldLease is the lease one convergence holds, shared by the renewal loop
// and the checks before each Sentry mutation.
type heldLease struct {
	mu    sync.Mutex
	lease state.Lease
}

func (h *heldLease) get() state.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease
}

func (h *heldLease) renewed(l state.Lease) {
	h.mu.Lock()
	h.lease = l
	h.mu.Unlock()
}

// check is the pre-mutation lease check: always a store round trip. Trusting
// a confirmation that is a few hundred milliseconds old would save one, but
// after Redis loses its data (restart, failover) another replica may take
// the person within that window; the chaos suite does exactly that.
func (h *heldLease) check(ctx context.Context, leases state.Leaser) error {
	return leases.Check(ctx, h.get())
}
