package jsstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Runs is a state.Runs on the KV bucket JML_RUNS, kept for RunRetention.
// Expiry of a halted plan is computed on read: a halted run past ExpiresAt
// reads as state.RunExpired and can no longer be approved.
type Runs struct {
	kv  jetstream.KeyValue
	st  jetstream.Stream
	now func() time.Time
}

var _ state.Runs = (*Runs)(nil)

// OpenRuns creates (or opens) the runs bucket.
func OpenRuns(ctx context.Context, js jetstream.JetStream, o Options) (*Runs, error) {
	o = o.withDefaults()
	kv, st, err := openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      BucketRuns,
		Description: "sentry-jml reconcile runs and halted plans awaiting approval",
		History:     1,
		TTL:         o.RunRetention,
		Storage:     o.storage(),
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, err
	}
	return &Runs{kv: kv, st: st, now: o.Now}, nil
}

// Put implements state.Runs.
func (r *Runs) Put(ctx context.Context, run state.ReconcileRun) error {
	if run.ID == "" {
		return errors.New("run: id is required")
	}
	b, err := json.Marshal(run)
	if err != nil {
		return fmt.Errorf("run %s: encode: %w", run.ID, err)
	}
	if _, err := r.kv.Put(ctx, kvKey(run.ID), b); err != nil {
		return fmt.Errorf("run %s: %w", run.ID, err)
	}
	return nil
}

func (r *Runs) get(ctx context.Context, id string) (state.ReconcileRun, uint64, error) {
	e, err := r.kv.Get(ctx, kvKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return state.ReconcileRun{}, 0, fmt.Errorf("run %s: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return state.ReconcileRun{}, 0, fmt.Errorf("run %s: %w", id, err)
	}
	var run state.ReconcileRun
	if err := json.Unmarshal(e.Value(), &run); err != nil {
		return state.ReconcileRun{}, 0, fmt.Errorf("run %s: decode: %w", id, err)
	}
	return run, e.Revision(), nil
}

func (r *Runs) expire(run state.ReconcileRun) state.ReconcileRun {
	if run.Expired(r.now()) {
		run.Status = state.RunExpired
	}
	return run
}

// Get implements state.Runs.
func (r *Runs) Get(ctx context.Context, id string) (state.ReconcileRun, error) {
	run, _, err := r.get(ctx, id)
	if err != nil {
		return state.ReconcileRun{}, err
	}
	return r.expire(run), nil
}

// List implements state.Runs.
func (r *Runs) List(ctx context.Context) iter.Seq2[state.ReconcileRun, error] {
	return func(yield func(state.ReconcileRun, error) bool) {
		cfg := jetstream.ConsumerConfig{
			FilterSubject: "$KV." + BucketRuns + ".>",
			DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		}
		for m, err := range scan(ctx, r.st, cfg) {
			if err != nil {
				yield(state.ReconcileRun{}, fmt.Errorf("runs: %w", err))
				return
			}
			if isKVDelete(m) {
				continue
			}
			var run state.ReconcileRun
			if err := json.Unmarshal(m.Data(), &run); err != nil {
				if !yield(state.ReconcileRun{}, fmt.Errorf("runs: decode %s: %w", m.Subject(), err)) {
					return
				}
				continue
			}
			if !yield(r.expire(run), nil) {
				return
			}
		}
	}
}

// Approve implements state.Runs.
func (r *Runs) Approve(ctx context.Context, id, by string, now time.Time) (state.ReconcileRun, error) {
	if by == "" {
		return state.ReconcileRun{}, fmt.Errorf("approve run %s: approver is required", id)
	}
	for attempt := 1; ; attempt++ {
		run, rev, err := r.get(ctx, id)
		if err != nil {
			return state.ReconcileRun{}, fmt.Errorf("approve: %w", err)
		}
		if run.Status != state.RunHalted {
			return state.ReconcileRun{}, fmt.Errorf("approve run %s (%s, approved by %q): %w", id, run.Status, run.ApprovedBy, state.ErrRunNotHalted)
		}
		if run.Expired(now) {
			return state.ReconcileRun{}, fmt.Errorf("approve run %s (expired %s): %w", id, run.ExpiresAt.Format(time.RFC3339), state.ErrRunExpired)
		}
		run.Status, run.ApprovedBy, run.ApprovedAt = state.RunApproved, by, now.UTC()
		b, err := json.Marshal(run)
		if err != nil {
			return state.ReconcileRun{}, fmt.Errorf("approve run %s: encode: %w", id, err)
		}
		_, err = r.kv.Update(ctx, kvKey(id), b, rev)
		if err == nil {
			return run, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return state.ReconcileRun{}, fmt.Errorf("approve run %s: %w", id, err)
		}
		if attempt >= 50 {
			return state.ReconcileRun{}, fmt.Errorf("approve run %s: too much contention: %w", id, err)
		}
	}
}
