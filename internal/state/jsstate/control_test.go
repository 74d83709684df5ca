package jsstate_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

func TestControlBrakesAndPause(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Run(t)
	now := time.Date(2026, 11, 28, 10, 0, 5, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := jsstate.OpenControl(ctx, js, jsstate.Options{Now: clock}, func() int { return 5 }, nil)
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
			a, err := c.Admit(ctx, 1)
			if err != nil || a.Paused {
				t.Error(a.Paused, err)
			}
			cmu.Lock()
			if a.Allowed {
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
	if a, _ := c.Admit(ctx, 1); a.Allowed {
		t.Fatal("halted brakes released by time alone")
	}
	if st, released, err := c.ApproveBrakes(ctx, "alice"); err != nil || !released || st.BrakesHalted || st.ApprovedBy != "alice" {
		t.Fatalf("approve: %+v %v %v", st, released, err)
	}
	if a, _ := c.Admit(ctx, 1); !a.Allowed {
		t.Fatal("removal refused after approval")
	}
	if _, _, err := c.ApproveBrakes(ctx, "alice"); !errors.Is(err, jsstate.ErrNotHalted) {
		t.Fatalf("approving brakes that are not halted: %v, want ErrNotHalted", err)
	}
	// Pause is fleet-wide state: a second handle on the same bucket sees it.
	c2, err := jsstate.OpenControl(ctx, js, jsstate.Options{Now: clock}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.SetPaused(ctx, true, "bob"); err != nil {
		t.Fatal(err)
	}
	if a, err := c2.Admit(ctx, 0); err != nil || !a.Paused {
		t.Fatalf("pause not visible to another replica: %v %v", a.Paused, err)
	}
	if _, _, err := c2.SetPaused(ctx, false, "bob"); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Admit(ctx, 0); a.Paused {
		t.Fatal("resume not visible")
	}
}

// Admit counts removals exactly, also when many callers of
// two replicas (two handles on the bucket) race, and answers the pause in
// the same read. Its group commit needs fewer compare-and-set writes than
// callers.
func TestControlAdmitGroupCommit(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Run(t)
	const limit = 40
	a, err := jsstate.OpenControl(ctx, js, jsstate.Options{}, func() int { return limit }, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := jsstate.OpenControl(ctx, js, jsstate.Options{}, func() int { return limit }, nil)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, jsstate.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 60 callers, one removal each, except every tenth asks for two.
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted, refused := 0, 0
	for i := range 60 {
		c := a
		if i%2 == 1 {
			c = b
		}
		n := 1
		if i%10 == 0 {
			n = 2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ad, err := c.Admit(ctx, n)
			if err != nil || ad.Paused {
				t.Errorf("Admit(%d) = paused %v, %v", n, ad.Paused, err)
				return
			}
			mu.Lock()
			if ad.Allowed {
				granted += n
			} else {
				refused++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	st, err := a.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.BrakesHalted || st.Removals != limit {
		t.Fatalf("state after 66 requested removals with limit %d: %+v", limit, st)
	}
	// Every granted removal was counted; a refused request may have counted
	// part of its two removals before the brakes halted.
	if granted > limit || granted < limit-6 || refused == 0 {
		t.Fatalf("granted %d removals, %d refused requests (limit %d)", granted, refused, limit)
	}
	after, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writes := after.(interface{ StreamInfo() *jetstream.StreamInfo }).StreamInfo().State.LastSeq -
		before.(interface{ StreamInfo() *jetstream.StreamInfo }).StreamInfo().State.LastSeq
	if writes >= 60 {
		t.Fatalf("%d writes for 60 callers: no group commit", writes)
	}
	t.Logf("60 callers, %d compare-and-set writes", writes)

	// Paused: no removal is counted, every caller hears it.
	if _, _, err := a.ApproveBrakes(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.SetPaused(ctx, true, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1} {
		if ad, err := a.Admit(ctx, n); err != nil || !ad.Paused || ad.Allowed {
			t.Fatalf("Admit(%d) while paused = %+v, %v", n, ad, err)
		}
	}
	if st, _ := a.State(ctx); st.Removals != 0 {
		t.Fatalf("a paused Admit counted removals: %+v", st)
	}
	if _, _, err := b.SetPaused(ctx, false, "bob"); err != nil {
		t.Fatal(err)
	}
	if ad, err := a.Admit(ctx, 0); err != nil || ad.Paused || !ad.Allowed {
		t.Fatalf("Admit(0) after resume = %+v, %v", ad, err)
	}
}

// The brakes count a sliding 60 s window, not calendar minutes: with a limit
// of 30, 30 removals at :57 and 30 more at :01 of the next minute are 60 in
// four seconds, and the second 30 halt the brakes. Once the first 30 are
// older than 60 s, room opens again.
func TestControlBrakesSlidingWindow(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Run(t)
	now := time.Date(2026, 11, 28, 10, 0, 57, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	c, err := jsstate.OpenControl(ctx, js, jsstate.Options{Now: clock}, func() int { return 30 }, nil)
	if err != nil {
		t.Fatal(err)
	}
	count := func() (allowed int, haltedNow int) {
		for range 30 {
			a, err := c.Admit(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if a.Allowed {
				allowed++
			}
			if a.HaltedNow {
				haltedNow++
			}
		}
		return
	}
	if n, h := count(); n != 30 || h != 0 {
		t.Fatalf("at :57 %d of 30 removals allowed (%d halts), want all", n, h)
	}
	set(time.Date(2026, 11, 28, 10, 1, 1, 0, time.UTC))
	if n, h := count(); n != 0 || h != 1 {
		t.Fatalf("at :01 of the next minute %d removals allowed and %d halts, want 0 and exactly 1", n, h)
	}
	st, _ := c.State(ctx)
	if !st.BrakesHalted || st.Halts != 1 || st.Removals != 30 {
		t.Fatalf("state: %+v", st)
	}
	// Approved: the window starts empty; time alone then keeps at most 30 in any 60 s.
	if _, released, err := c.ApproveBrakes(ctx, "alice"); err != nil || !released {
		t.Fatal(released, err)
	}
	for i := range 30 {
		set(time.Date(2026, 11, 28, 10, 2, 0, 0, time.UTC).Add(time.Duration(i) * time.Second))
		if a, _ := c.Admit(ctx, 1); !a.Allowed {
			t.Fatalf("removal %d of 30 after approval refused", i)
		}
	}
	// 10:02:59.5: the window (10:01:59.5, 10:02:59.5] holds all 30.
	set(time.Date(2026, 11, 28, 10, 2, 59, 500e6, time.UTC))
	if a, _ := c.Admit(ctx, 1); a.Allowed || !a.HaltedNow {
		t.Fatalf("31st removal within 60 s: %+v", a)
	}
	if _, _, err := c.ApproveBrakes(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
}

// brakes.approvals: 2 needs two distinct operators; the same one twice does
// not release the brakes.
func TestControlTwoPersonApproval(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Run(t)
	c, err := jsstate.OpenControl(ctx, js, jsstate.Options{}, func() int { return 1 }, func() int { return 2 })
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Admit(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	st, released, err := c.ApproveBrakes(ctx, "alice")
	if err != nil || released || !st.BrakesHalted || len(st.Approvals) != 1 {
		t.Fatalf("first approval: %+v released=%v %v", st, released, err)
	}
	if _, released, err := c.ApproveBrakes(ctx, "alice"); !errors.Is(err, jsstate.ErrSameApprover) || released {
		t.Fatalf("same operator twice: released=%v %v, want ErrSameApprover", released, err)
	}
	if a, _ := c.Admit(ctx, 1); a.Allowed {
		t.Fatal("removal allowed with one of two approvals")
	}
	st, released, err = c.ApproveBrakes(ctx, "bob")
	if err != nil || !released || st.BrakesHalted || st.ApprovedBy != "alice,bob" || len(st.Approvals) != 0 {
		t.Fatalf("second approval: %+v released=%v %v", st, released, err)
	}
	if a, _ := c.Admit(ctx, 1); !a.Allowed {
		t.Fatal("removal refused after two approvals")
	}
}
