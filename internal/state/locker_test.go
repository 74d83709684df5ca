package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
)

// A job lock is renewed while its job runs, so a run longer than the lock's
// TTL keeps other replicas out; once unlocked, another replica takes it.
func TestLockerRenewsWhileTheJobRuns(t *testing.T) {
	ctx := context.Background()
	store := memstate.New(nil) // real time: the renewals run on a real ticker
	const ttl = 300 * time.Millisecond
	la := state.NewLocker(store, "replica-a", ttl)
	lb := state.NewLocker(store, "replica-b", ttl)
	lk, err := la.Lock(ctx, "reconcile")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // 4 × TTL/2 = twice the TTL
		time.Sleep(ttl / 2)
		if _, err := lb.Lock(ctx, "reconcile"); !errors.Is(err, state.ErrLeaseHeld) {
			t.Fatalf("while replica-a runs the job: Lock by replica-b = %v, want ErrLeaseHeld", err)
		}
	}
	if err := lk.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Lock(ctx, "reconcile"); err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
}
