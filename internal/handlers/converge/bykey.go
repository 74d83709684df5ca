package converge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// This file is convergence by key, after controller-runtime's Reconcile
// contract: the caller names a person, Reconcile reads that person's record
// under the person's lease, plans and applies, and says in its Result when
// to come back (RequeueAfter) instead of returning waits as errors. An error
// is a failure to retry with backoff, unless it is marked terminal
// (TerminalError): then retrying cannot help and the caller stops.

// ErrTerminal marks an error retrying cannot fix (IsTerminal): the event
// worker dead-letters the event at once.
var ErrTerminal = errors.New("terminal")

// TerminalError marks err as terminal (nil stays nil).
func TerminalError(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err: err}
}

type terminalError struct{ err error }

func (t *terminalError) Error() string   { return t.err.Error() }
func (t *terminalError) Unwrap() []error { return []error{ErrTerminal, t.err} }

// IsTerminal reports whether err was marked terminal.
func IsTerminal(err error) bool { return errors.Is(err, ErrTerminal) }

// RecordConverger converges one person's record: the planner and applier
// (*Converger), or a wrapper of it in tests.
type RecordConverger interface {
	Converge(ctx context.Context, rec state.PersonRecord, check LeaseCheck) (Result, error)
}

// RecordReader reads a person's directory record (state.Directory).
type RecordReader interface {
	Get(ctx context.Context, key string) (state.PersonRecord, error)
}

// Held is a person's lease its holder passes to Reconcile (WithLease): the
// check run right before each mutation leaves, and, optionally, the record
// the holder has just written under it (so Reconcile need not read it back).
type Held struct {
	Key    string
	Check  LeaseCheck
	Record *state.PersonRecord
}

type heldKey struct{}

// WithLease tells Reconcile that the caller holds the lease of h.Key.
func WithLease(ctx context.Context, h Held) context.Context {
	return context.WithValue(ctx, heldKey{}, h)
}

func heldFrom(ctx context.Context, key string) (Held, bool) {
	h, ok := ctx.Value(heldKey{}).(Held)
	return h, ok && h.Key == key && h.Check != nil
}

// ReconcilerOptions wire a Reconciler.
type ReconcilerOptions struct {
	Converger RecordConverger
	Directory RecordReader
	// Leases take the person's lease ("person:<key>", the event worker's
	// key) when the caller holds none. Required.
	Leases   state.Leaser
	Owner    string
	LeaseTTL time.Duration // default 30s
	// BusyDelay is the RequeueAfter when another replica holds the person
	// (default 250ms).
	BusyDelay time.Duration
}

// Reconciler converges people by key.
type Reconciler struct{ o ReconcilerOptions }

// NewReconciler validates o.
func NewReconciler(o ReconcilerOptions) (*Reconciler, error) {
	if o.Converger == nil || o.Directory == nil || o.Leases == nil {
		return nil, errors.New("converge: Reconciler needs Converger, Directory and Leases")
	}
	if o.Owner == "" {
		o.Owner = "converge"
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.BusyDelay <= 0 {
		o.BusyDelay = 250 * time.Millisecond
	}
	return &Reconciler{o: o}, nil
}

// LeaseKey is the lease that serialises everything done to one person.
func LeaseKey(personKey string) string { return "person:" + personKey }

// Reconcile brings the person at key to their desired state. It runs under
// the person's lease: the caller's (WithLease), else one it takes and
// releases (another replica holding it is a wait: RequeueAfter). The record
// is read from the directory under that lease, unless the holder passed the
// one it has just written. Waits (a pause, the brakes, Sentry's invite
// quota, a token revocation to retry, the person busy elsewhere) come back
// as Result.RequeueAfter with a nil error; an error is a failure to retry,
// or, when IsTerminal, one not to retry (an evidence record that could not
// be written after its retries).
func (r *Reconciler) Reconcile(ctx context.Context, key string) (Result, error) {
	h, held := heldFrom(ctx, key)
	if !held {
		l, err := r.o.Leases.Acquire(ctx, LeaseKey(key), r.o.Owner, r.o.LeaseTTL)
		if errors.Is(err, state.ErrLeaseHeld) {
			return Result{Outcome: OutcomeInSync, Reason: "person busy on another replica", RequeueAfter: r.o.BusyDelay}, nil
		}
		if err != nil {
			return Result{}, fmt.Errorf("acquire lease: %w", err)
		}
		defer func() { _ = r.o.Leases.Release(context.WithoutCancel(ctx), l) }()
		h = Held{Key: key, Check: func(ctx context.Context) error { return r.o.Leases.Check(ctx, l) }}
	}
	var rec state.PersonRecord
	if h.Record != nil && h.Record.Key == key {
		rec = *h.Record
	} else {
		var err error
		if rec, err = r.o.Directory.Get(ctx, key); err != nil {
			return Result{}, fmt.Errorf("directory: %w", err)
		}
	}
	res, err := r.o.Converger.Converge(ctx, rec, h.Check)
	if errors.Is(err, ErrEvidence) {
		return res, TerminalError(err)
	}
	return asWait(res, err)
}

// asWait moves a wait (*RetryLater) from the error into the result
// (RequeueAfter, the reason, the gate's refusal kind).
func asWait(res Result, err error) (Result, error) {
	var later *RetryLater
	if !errors.As(err, &later) {
		return res, err
	}
	if res.Outcome == "" {
		res.Outcome = OutcomeHalted
	}
	res.RequeueAfter, res.Reason = max(later.Delay, time.Millisecond), later.Reason
	if later.Held != "" {
		res.Held = later.Held
	}
	return res, nil
}
