package jsstate_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

func TestControlBrakesAndPause(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Run(t)
	now := time.Date(2026, 11, 28, 10, 0, 5, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := jsstate.OpenControl(ctx, js, jsstate.Options{Now: clock}, func() int { return 5 })
	if err != nil {
		t.Fatal(err)
	}
	// Ten concurrent removals in one minute: exactly five pass, then the brakes halt.
	var wg sync.WaitGroup
	var allowed, refused int
	var cmu sync.Mutex
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := c.AllowRemoval(ctx)
			if err != nil {
				t.Error(err)
			}
			cmu.Lock()
			if ok {
				allowed++
			} else {
				refused++
			}
			cmu.Unlock()
		}()
	}
	wg.Wait()
	if allowed != 5 || refused != 5 {
		t.Fatalf("allowed %d refused %d, want 5 and 5", allowed, refused)
	}
	st, _ := c.State(ctx)
	if !st.BrakesHalted || st.HaltedAt.IsZero() {
		t.Fatalf("brakes not halted: %+v", st)
	}
	// A new minute does not release halted brakes; only an approval does.
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if ok, _ := c.AllowRemoval(ctx); ok {
		t.Fatal("halted brakes released by time alone")
	}
	if st, err := c.ApproveBrakes(ctx, "alice"); err != nil || st.BrakesHalted || st.ApprovedBy != "alice" {
		t.Fatalf("approve: %+v %v", st, err)
	}
	if ok, _ := c.AllowRemoval(ctx); !ok {
		t.Fatal("removal refused after approval")
	}
	// Pause is fleet-wide state: a second handle on the same bucket sees it.
	c2, err := jsstate.OpenControl(ctx, js, jsstate.Options{Now: clock}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetPaused(ctx, true, "bob"); err != nil {
		t.Fatal(err)
	}
	if p, err := c2.Paused(ctx); err != nil || !p {
		t.Fatalf("pause not visible to another replica: %v %v", p, err)
	}
	if _, err := c2.SetPaused(ctx, false, "bob"); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.Paused(ctx); p {
		t.Fatal("resume not visible")
	}
}
