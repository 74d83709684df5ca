package alert

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Sink delivers one alert in one attempt. id is stable across the attempts of
// one alert. An error wrapping ErrRetryable asks for another attempt; any other
// error is permanent. Errors and Name must never contain a credential.
type Sink interface {
	Name() string
	Send(ctx context.Context, id string, a Alert) error
}

// Errors returned by Notify.
var (
	// ErrQueueFull: a sink's queue was full and the alert was dropped for it
	// (counted as outcome="dropped").
	ErrQueueFull = errors.New("alert: queue full, alert dropped")
	// ErrClosed: Notify after Close.
	ErrClosed = errors.New("alert: notifier closed")
)

// Options configure a Notifier. The zero value of every field but Sinks is usable.
type Options struct {
	Sinks []Sink
	// QueueSize bounds each sink's queue (default 256). A full queue drops.
	QueueSize int
	// DedupeWindow: an alert identical to one accepted within the window (same
	// kind, severity, summary, person and details; At is ignored) is dropped.
	// Default 15 minutes; negative disables.
	DedupeWindow time.Duration
	// MaxAttempts per alert and sink (default 6).
	MaxAttempts int
	// BackoffMin and BackoffMax bound the exponential backoff between attempts
	// (defaults 1 s and 1 min); a longer Retry-After from the receiver wins, up to BackoffMax.
	BackoffMin, BackoffMax time.Duration
	// AttemptTimeout bounds one attempt (default 10 s).
	AttemptTimeout time.Duration
	Logger         *slog.Logger
	MeterProvider  metric.MeterProvider
	// Now is the clock for deduplication and default At (default time.Now).
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	if o.DedupeWindow == 0 {
		o.DedupeWindow = 15 * time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Minute
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MeterProvider == nil {
		o.MeterProvider = noop.NewMeterProvider()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Notifier fans alerts out to its sinks without ever blocking the caller: each
// sink has a bounded queue and one goroutine that delivers with retries.
type Notifier struct {
	o      Options
	queues []chan delivery
	count  metric.Int64Counter

	mu     sync.Mutex
	seen   map[string]time.Time // dedupe key → time accepted
	closed bool

	ctx    context.Context // ends when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type delivery struct {
	id string
	a  Alert
}

// maxSeen bounds the dedupe memory; beyond it expired keys are pruned, and if
// that is not enough the memory is cleared (dedupe is best effort).
const maxSeen = 4096

// New starts one delivery goroutine per sink; Close stops them.
func New(o Options) (*Notifier, error) {
	o.setDefaults()
	names := map[string]bool{}
	for _, s := range o.Sinks {
		if s == nil {
			return nil, errors.New("alert: nil sink")
		}
		if names[s.Name()] {
			return nil, fmt.Errorf("alert: two sinks named %q", s.Name())
		}
		names[s.Name()] = true
	}
	c, err := o.MeterProvider.Meter("github.com/sentry-jml/sentry-jml/internal/alert").Int64Counter("jml_alerts",
		metric.WithDescription("Operator alerts by kind, sink and outcome (sent, failed, dropped, deduplicated)"))
	if err != nil {
		return nil, fmt.Errorf("alert: metric: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{o: o, count: c, seen: map[string]time.Time{}, ctx: ctx, cancel: cancel}
	// Every series whose labels are known is exported at zero from the start.
	for _, k := range Kinds {
		n.count.Add(ctx, 0, metric.WithAttributes(attribute.String("kind", string(k)), attribute.String("sink", ""), attribute.String("outcome", "deduplicated")))
		for _, s := range o.Sinks {
			for _, outcome := range []string{"sent", "failed", "dropped"} {
				n.count.Add(ctx, 0, metric.WithAttributes(attribute.String("kind", string(k)), attribute.String("sink", s.Name()), attribute.String("outcome", outcome)))
			}
		}
	}
	for _, s := range o.Sinks {
		q := make(chan delivery, o.QueueSize)
		n.queues = append(n.queues, q)
		n.wg.Add(1)
		go n.run(s, q)
	}
	return n, nil
}

// Notify queues a for every sink and returns at once. An identical alert within
// the dedupe window is dropped silently (nil). A full sink queue drops the alert
// for that sink and returns an error wrapping ErrQueueFull; the other sinks still
// get it. ctx is not used for delivery, which outlives the call.
func (n *Notifier) Notify(ctx context.Context, a Alert) error {
	now := n.o.Now()
	a = a.sanitized(now)
	if err := a.validate(); err != nil {
		return err
	}
	key := a.key()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if t, ok := n.seen[key]; ok && n.o.DedupeWindow > 0 && now.Sub(t) < n.o.DedupeWindow {
		n.add(ctx, a.Kind, "", "deduplicated")
		return nil
	}
	d := delivery{id: newID(), a: a}
	var errs []error
	accepted := false
	for i, q := range n.queues {
		name := n.o.Sinks[i].Name()
		select {
		case q <- d:
			accepted = true
		default:
			n.add(ctx, a.Kind, name, "dropped")
			n.o.Logger.WarnContext(ctx, "alert dropped: sink queue full", "sink", name, "kind", string(a.Kind))
			errs = append(errs, fmt.Errorf("%w (sink %s)", ErrQueueFull, name))
		}
	}
	if accepted && n.o.DedupeWindow > 0 {
		n.remember(key, now)
	}
	return errors.Join(errs...)
}

func (n *Notifier) remember(key string, now time.Time) {
	if len(n.seen) >= maxSeen {
		for k, t := range n.seen {
			if now.Sub(t) >= n.o.DedupeWindow {
				delete(n.seen, k)
			}
		}
		if len(n.seen) >= maxSeen {
			clear(n.seen)
		}
	}
	n.seen[key] = now
}

// Close stops accepting alerts and waits for the queued ones to be delivered
// until ctx ends; then it abandons retries and returns ctx's error.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		for _, q := range n.queues {
			close(q)
		}
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return ctx.Err()
	}
}

func (n *Notifier) run(s Sink, q <-chan delivery) {
	defer n.wg.Done()
	for d := range q {
		if n.ctx.Err() != nil {
			n.add(n.ctx, d.a.Kind, s.Name(), "dropped")
			continue
		}
		n.deliver(s, d)
	}
}

func (n *Notifier) deliver(s Sink, d delivery) {
	log := n.o.Logger.With("sink", s.Name(), "kind", string(d.a.Kind), "alert_id", d.id)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(n.ctx, n.o.AttemptTimeout)
		err := s.Send(actx, d.id, d.a)
		cancel()
		if err == nil {
			n.add(n.ctx, d.a.Kind, s.Name(), "sent")
			log.Debug("alert sent", "attempt", attempt)
			return
		}
		if !errors.Is(err, ErrRetryable) || attempt >= n.o.MaxAttempts || n.ctx.Err() != nil {
			n.add(n.ctx, d.a.Kind, s.Name(), "failed")
			log.Warn("alert not delivered", "attempt", attempt, "err", err.Error())
			return
		}
		wait := n.backoff(attempt)
		var re *retryError
		if errors.As(err, &re) && re.after > wait {
			wait = min(re.after, n.o.BackoffMax)
		}
		log.Debug("alert attempt failed; retrying", "attempt", attempt, "backoff", wait, "err", err.Error())
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-n.ctx.Done():
			t.Stop()
			n.add(n.ctx, d.a.Kind, s.Name(), "failed")
			log.Warn("alert abandoned at shutdown", "attempt", attempt)
			return
		}
	}
}

// backoff is BackoffMin·2^(attempt-1), capped, with jitter in [d/2, d].
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.o.BackoffMin << (attempt - 1)
	if d > n.o.BackoffMax || d <= 0 {
		d = n.o.BackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

func (n *Notifier) add(ctx context.Context, k Kind, sink, outcome string) {
	n.count.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(k)), attribute.String("sink", sink), attribute.String("outcome", outcome)))
}

// newID returns a Standard Webhooks message id, unique per alert.
func newID() string { return "msg_" + crand.Text() }
