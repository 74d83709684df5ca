package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
)

// countingLeaser counts the store round trips of lease checks.
type countingLeaser struct {
	state.Leaser
	checks int
}

func (c *countingLeaser) Check(ctx context.Context, l state.Lease) error {
	c.checks++
	return c.Leaser.Check(ctx, l)
}

// A lease the store confirmed moments ago is trusted without a round trip;
// an older confirmation is re-checked, and a lost lease is then noticed.
func TestHeldLeaseCheck(t *testing.T) {
	ctx := context.Background()
	store := &countingLeaser{Leaser: memstate.New(nil)}
	at := time.Now()
	l, err := store.Acquire(ctx, "person:x", "w1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldLease{lease: l, verified: at, trust: 50 * time.Millisecond}
	for range 3 {
		if err := h.check(ctx, store); err != nil {
			t.Fatal(err)
		}
	}
	if store.checks != 0 {
		t.Fatalf("%d store checks right after acquiring, want 0", store.checks)
	}
	time.Sleep(60 * time.Millisecond)
	if err := h.check(ctx, store); err != nil || store.checks != 1 {
		t.Fatalf("check after the trust window: err %v, %d store checks (want nil, 1)", err, store.checks)
	}
	if err := h.check(ctx, store); err != nil || store.checks != 1 {
		t.Fatalf("check right after a confirmation: err %v, %d store checks (want nil, 1)", err, store.checks)
	}
	// Another owner takes the key once the lease is gone.
	if err := store.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Acquire(ctx, "person:x", "w2", time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if err := h.check(ctx, store); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("check of a lost lease = %v, want ErrLeaseLost", err)
	}
	// A confirmation from the future (wall clock stepped back) is not trusted.
	h2 := &heldLease{lease: l, verified: time.Now().Add(time.Hour).Round(0), trust: 50 * time.Millisecond}
	if err := h2.check(ctx, store); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("check with a confirmation stamped in the future = %v, want a store check (ErrLeaseLost)", err)
	}
}
