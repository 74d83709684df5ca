package converge_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
)

// records is a directory that only reads, counting the reads.
type records struct {
	mu    sync.Mutex
	m     map[string]state.PersonRecord
	reads int
}

func (r *records) Get(_ context.Context, key string) (state.PersonRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	rec, ok := r.m[key]
	if !ok {
		return state.PersonRecord{}, fmt.Errorf("person %s: %w", key, state.ErrNotFound)
	}
	return rec, nil
}

func reconciler(t *testing.T, conv converge.RecordConverger, dir *records, leases state.Leaser) *converge.Reconciler {
	t.Helper()
	r, err := converge.NewReconciler(converge.ReconcilerOptions{Converger: conv, Directory: dir, Leases: leases, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Reconcile by key reads the person's record under a lease it takes itself,
// converges it and gives the lease back.
func TestReconcileByKeyTakesTheLeaseAndReadsTheRecord(t *testing.T) {
	sb, conv := setup(t, nil)
	rec := leaver("jane.doe@acme.test")
	dir := &records{m: map[string]state.PersonRecord{rec.Key: rec}}
	leases := memstate.New(clockwork.NewRealClock())
	r := reconciler(t, conv, dir, leases)
	res, err := r.Reconcile(context.Background(), rec.Key)
	if err != nil || !res.Removed || res.RequeueAfter != 0 {
		t.Fatalf("Reconcile = %+v, %v; want the removal, no requeue", res, err)
	}
	if _, ok := sb.Member("jane.doe@acme.test"); ok {
		t.Fatal("leaver still a member")
	}
	if dir.reads != 1 {
		t.Fatalf("%d directory reads, want 1", dir.reads)
	}
	// The lease was released: another owner takes it at once.
	l, err := leases.Acquire(context.Background(), converge.LeaseKey(rec.Key), "other", time.Minute)
	if err != nil {
		t.Fatalf("lease not released: %v", err)
	}
	_ = leases.Release(context.Background(), l)
	// An unknown person is an error, not a wait.
	if _, err := r.Reconcile(context.Background(), "email:nobody@acme.test"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("unknown person: %v", err)
	}
}

// A person whose lease another replica holds is a wait (RequeueAfter), not
// an error, and nothing is read or sent.
func TestReconcileByKeyWaitsForABusyPerson(t *testing.T) {
	sb, conv := setup(t, nil)
	rec := leaver("jane.doe@acme.test")
	dir := &records{m: map[string]state.PersonRecord{rec.Key: rec}}
	leases := memstate.New(clockwork.NewRealClock())
	if _, err := leases.Acquire(context.Background(), converge.LeaseKey(rec.Key), "other-replica", time.Minute); err != nil {
		t.Fatal(err)
	}
	sb.ResetStats()
	res, err := reconciler(t, conv, dir, leases).Reconcile(context.Background(), rec.Key)
	if err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("Reconcile = %+v, %v; want a wait", res, err)
	}
	if dir.reads != 0 || len(sb.Stats().Mutations) != 0 {
		t.Fatalf("busy person: %d reads, mutations %v", dir.reads, sb.Stats().Mutations)
	}
}

// The caller's lease (WithLease) is used as is, with the record it passes:
// no second lease, no read back. Its check runs once per mutation, right
// before the request leaves.
func TestReconcileByKeyUsesTheCallersLease(t *testing.T) {
	sb, conv := setup(t, nil)
	rec := leaver("jane.doe@acme.test")
	dir := &records{m: map[string]state.PersonRecord{}}
	leases := memstate.New(clockwork.NewRealClock())
	// Someone else "holds" the lease as far as the store knows: Reconcile
	// must not try to take it.
	if _, err := leases.Acquire(context.Background(), converge.LeaseKey(rec.Key), "other", time.Minute); err != nil {
		t.Fatal(err)
	}
	checks := 0
	ctx := converge.WithLease(context.Background(), converge.Held{Key: rec.Key, Record: &rec,
		Check: func(context.Context) error { checks++; return nil }})
	res, err := reconciler(t, conv, dir, leases).Reconcile(ctx, rec.Key)
	if err != nil || !res.Removed {
		t.Fatalf("Reconcile = %+v, %v", res, err)
	}
	if dir.reads != 0 {
		t.Fatalf("%d reads; the holder's record should be used", dir.reads)
	}
	if n := len(sb.Stats().Mutations["member.remove"]); n != 1 || checks != 1 {
		t.Fatalf("%d removals, %d lease checks; want one check per mutation", n, checks)
	}
	// A lost lease stops the mutation before it leaves.
	rec2 := leaver("bob.martin@acme.test")
	ctx = converge.WithLease(context.Background(), converge.Held{Key: rec2.Key, Record: &rec2,
		Check: func(context.Context) error { return state.ErrLeaseLost }})
	if _, err := reconciler(t, conv, dir, leases).Reconcile(ctx, rec2.Key); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("lost lease: %v", err)
	}
	if _, ok := sb.Member("bob.martin@acme.test"); !ok {
		t.Fatal("removed without the lease")
	}
}

// Waits come back in the Result: a paused gate is RequeueAfter with the
// gate's reason and a nil error; an evidence record that cannot be written
// is a terminal error.
func TestReconcileByKeyWaitsAndTerminalErrors(t *testing.T) {
	rec := leaver("jane.doe@acme.test")
	leases := memstate.New(clockwork.NewRealClock())
	_, paused := gatedConverger(t, &flakySink{}, time.Second, heldGate{sentry.RefusedPaused})
	res, err := reconciler(t, paused, &records{m: map[string]state.PersonRecord{rec.Key: rec}}, leases).Reconcile(context.Background(), rec.Key)
	if err != nil || res.RequeueAfter <= 0 || res.Held != sentry.RefusedPaused || res.Outcome != converge.OutcomeHalted {
		t.Fatalf("paused: %+v, %v; want a wait with the gate's kind", res, err)
	}
	_, lost := evidenceConverger(t, &flakySink{fail: 1 << 30}, 100*time.Millisecond)
	_, err = reconciler(t, lost, &records{m: map[string]state.PersonRecord{rec.Key: rec}}, leases).Reconcile(context.Background(), rec.Key)
	if !converge.IsTerminal(err) || !errors.Is(err, converge.ErrEvidence) {
		t.Fatalf("evidence lost: %v; want a terminal ErrEvidence", err)
	}
	if converge.IsTerminal(errors.New("503")) || converge.TerminalError(nil) != nil {
		t.Fatal("only marked errors are terminal")
	}
}
