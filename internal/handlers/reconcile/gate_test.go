package reconcile_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/safety"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// gated starts a real safety gate (limit removals per 60 s) on its own NATS.
func gated(t *testing.T, limit int) (*safety.Gate, *jsstate.Control) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	_, _, js := natstest.Run(t)
	control, err := jsstate.OpenControl(ctx, js, jsstate.Options{}, func() int { return limit }, nil)
	if err != nil {
		t.Fatal(err)
	}
	presence, err := jsstate.OpenPresence(ctx, js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := safety.New(safety.Options{Control: control, Presence: presence, ID: "reconcile-test", Beat: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, func() bool { _, _, ok := g.View(); return ok })
	return g, control
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mutations(log []sentrytest.LoggedRequest) int {
	n := 0
	for _, q := range log {
		if q.Method != http.MethodGet {
			n++
		}
	}
	return n
}

// jml pause stops reconcile too: a run while paused plans its changes and
// holds every one of them (nothing is sent); after the resume the next run
// applies them.
func TestReconcileWhilePausedSendsNothing(t *testing.T) {
	g, _ := gated(t, 30)
	h := mustHarnessGate(t, sentrytest.DemoSeed(), "", g)
	h.everyoneActive(t)
	h.person(t, "missing.joiner@acme.test", events.Active, "")
	h.person(t, "bob.martin@acme.test", events.Terminated, "")
	if _, err := g.Pause(context.Background(), "alice", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	before := mutations(h.sb.RequestLog())
	sum, err := h.rec.Run(context.Background(), reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := mutations(h.sb.RequestLog()) - before; n != 0 {
		t.Fatalf("a reconcile run while paused sent %d mutations", n)
	}
	if sum.Held < 2 || sum.Applied != 0 {
		t.Fatalf("summary while paused: held %d applied %d, want everything held: %+v", sum.Held, sum.Applied, sum)
	}
	if _, err := g.Resume(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { v, _, _ := g.View(); return !v.Paused })
	sum, err = h.rec.Run(context.Background(), reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Applied < 2 || sum.Held != 0 || h.member("bob.martin@acme.test") != nil || h.member("missing.joiner@acme.test") == nil {
		t.Fatalf("after resume: %+v", sum)
	}
}

// A removal held by halted brakes stays held on the reconcile path: the run
// plans it, reports it held and applies the rest; only an approval releases it.
func TestReconcileHoldsRemovalsWhileBrakesHalted(t *testing.T) {
	g, control := gated(t, 1)
	h := mustHarnessGate(t, sentrytest.DemoSeed(), "reconcile: {max_removals: 5, max_removal_ratio: 0.5}", g)
	h.everyoneActive(t)
	leaver := "bob.martin@acme.test"
	h.person(t, leaver, events.Terminated, "")
	// Two event-driven removals elsewhere: the second halts the brakes (limit 1).
	for range 2 {
		if _, err := control.Admit(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool { v, _, _ := g.View(); return v.BrakesHalted })
	sum, err := h.rec.Run(context.Background(), reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts.Remove != 1 || sum.Held != 1 {
		t.Fatalf("summary with halted brakes: %+v, want the removal planned and held", sum)
	}
	if h.member(leaver) == nil {
		t.Fatal("a removal held by the brakes was applied by reconcile")
	}
	if _, released, err := g.ApproveBrakes(context.Background(), "alice"); err != nil || !released {
		t.Fatal(released, err)
	}
	waitUntil(t, func() bool { v, _, _ := g.View(); return !v.BrakesHalted })
	if sum, err = h.rec.Run(context.Background(), reconcile.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if h.member(leaver) != nil || sum.Held != 0 {
		t.Fatalf("after approval the leaver is still a member: %+v", sum)
	}
}
