package jsstate_test

import (
	"context"
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
			paused, ok, err := c.Admit(ctx, 1)
			if err != nil || paused {
				t.Error(paused, err)
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
	if _, ok, _ := c.Admit(ctx, 1); ok {
		t.Fatal("halted brakes released by time alone")
	}
	if st, err := c.ApproveBrakes(ctx, "alice"); err != nil || st.BrakesHalted || st.ApprovedBy != "alice" {
		t.Fatalf("approve: %+v %v", st, err)
	}
	if _, ok, _ := c.Admit(ctx, 1); !ok {
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
	if p, _, err := c2.Admit(ctx, 0); err != nil || !p {
		t.Fatalf("pause not visible to another replica: %v %v", p, err)
	}
	if _, err := c2.SetPaused(ctx, false, "bob"); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := c.Admit(ctx, 0); p {
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
	a, err := jsstate.OpenControl(ctx, js, jsstate.Options{}, func() int { return limit })
	if err != nil {
		t.Fatal(err)
	}
	b, err := jsstate.OpenControl(ctx, js, jsstate.Options{}, func() int { return limit })
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
			paused, ok, err := c.Admit(ctx, n)
			if err != nil || paused {
				t.Errorf("Admit(%d) = paused %v, %v", n, paused, err)
				return
			}
			mu.Lock()
			if ok {
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
	if _, err := a.ApproveBrakes(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetPaused(ctx, true, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1} {
		if paused, ok, err := a.Admit(ctx, n); err != nil || !paused || ok {
			t.Fatalf("Admit(%d) while paused = %v, %v, %v", n, paused, ok, err)
		}
	}
	if st, _ := a.State(ctx); st.Removals != 0 {
		t.Fatalf("a paused Admit counted removals: %+v", st)
	}
	if _, err := b.SetPaused(ctx, false, "bob"); err != nil {
		t.Fatal(err)
	}
	if paused, ok, err := a.Admit(ctx, 0); err != nil || paused || !ok {
		t.Fatalf("Admit(0) after resume = %v, %v, %v", paused, ok, err)
	}
}
