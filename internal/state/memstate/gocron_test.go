package memstate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
)

// TestGocronLocker runs two real gocron schedulers ("replicas") sharing one
// store: on a tick exactly one runs the job, the other gets a lock error
// wrapping state.ErrLeaseHeld, and Shutdown (which hands Unlock a cancelled
// context) still releases the lock.
func TestGocronLocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	fc := clockwork.NewFakeClock()
	store := memstate.New(fc)
	started := make(chan string, 4)
	lockErrs := make(chan error, 4)

	newReplica := func(owner string) gocron.Scheduler {
		s, err := gocron.NewScheduler(
			gocron.WithClock(fc),
			gocron.WithDistributedLocker(state.NewLocker(store, owner, time.Minute)),
			gocron.WithStopTimeout(5*time.Second),
		)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.NewJob(gocron.DurationJob(time.Minute),
			gocron.NewTask(func(ctx context.Context) {
				started <- owner
				<-ctx.Done() // runs until Shutdown
			}),
			gocron.WithName("reconcile"),
			gocron.WithEventListeners(gocron.AfterLockError(func(_ uuid.UUID, _ string, err error) {
				lockErrs <- err
			})),
		)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		return s
	}
	a, b := newReplica("replica-a"), newReplica("replica-b")

	if err := fc.BlockUntilContext(ctx, 2); err != nil {
		t.Fatalf("schedulers did not arm their timers: %v", err)
	}
	fc.Advance(time.Minute)

	var winner string
	select {
	case winner = <-started:
	case <-ctx.Done():
		t.Fatal("no replica ran the job")
	}
	select {
	case err := <-lockErrs:
		if !errors.Is(err, state.ErrLeaseHeld) {
			t.Fatalf("loser's lock error = %v; want ErrLeaseHeld", err)
		}
	case <-ctx.Done():
		t.Fatal("the other replica did not report a lock error")
	}
	select {
	case o := <-started:
		t.Fatalf("both %s and %s ran the same tick", winner, o)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := store.Acquire(ctx, state.LockKeyPrefix+"reconcile", "outsider", time.Minute); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("job lease while the job runs: err = %v; want ErrLeaseHeld", err)
	}

	// Shutdown cancels the running job; gocron then calls Unlock with the
	// job's (cancelled) context. The lock must still be released.
	for _, s := range []gocron.Scheduler{a, b} {
		if err := s.Shutdown(); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	var err error
	for range 100 {
		if _, err = store.Acquire(ctx, state.LockKeyPrefix+"reconcile", "outsider", time.Minute); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job lease after Shutdown: %v; want it released by Unlock", err)
}
