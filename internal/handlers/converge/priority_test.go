package converge_test

import (
	"context"
	"sync"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// recordingBudget paces like the real local budget and remembers the
// priority of every call.
type recordingBudget struct {
	*sentry.LocalBudget
	mu    sync.Mutex
	prios []sentry.Priority
}

func (b *recordingBudget) Acquire(ctx context.Context, key string, p sentry.Priority) (func(), error) {
	b.mu.Lock()
	b.prios = append(b.prios, p)
	b.mu.Unlock()
	return b.LocalBudget.Acquire(ctx, key, p)
}

func (b *recordingBudget) take() []sentry.Priority {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.prios
	b.prios = nil
	return out
}

// Leavers' and suspensions' Sentry calls wait in the leaver class of the
// shared rate budget, ahead of joiners and reconcile; a caller that chose a
// class keeps it.
func TestLeaverCallsHaveLeaverPriority(t *testing.T) {
	sb := sentrytest.NewServer(t, sentrytest.Options{RateLimit: -1})
	bg := &recordingBudget{LocalBudget: sentry.NewLocalBudget(sentry.LocalBudgetOptions{})}
	c, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: &safetytest.Gate{}, MaxRetries: 1, Budget: bg})
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conv, err := converge.New(converge.Options{Sentry: c, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole})
	if err != nil {
		t.Fatal(err)
	}
	bg.take()
	check := func(name string, ctx context.Context, rec state.PersonRecord, want sentry.Priority) {
		t.Helper()
		res, err := conv.Converge(ctx, rec, held)
		if err != nil || res.Outcome != converge.OutcomeApplied {
			t.Fatalf("%s: %s %v (%s)", name, res.Outcome, err, res.Reason)
		}
		got := bg.take()
		if len(got) < 2 {
			t.Fatalf("%s: %d Sentry calls went through the budget, want a read and a change", name, len(got))
		}
		for i, p := range got {
			if p != want {
				t.Fatalf("%s: call %d had priority %v, want %v (all: %v)", name, i, p, want, got)
			}
		}
	}
	check("leaver", context.Background(), leaver("jane.doe@acme.test"), sentry.PriorityLeaver)
	check("joiner", context.Background(), state.PersonRecord{Key: "id:new-1", Person: events.Person{ID: "new-1", Email: "new.joiner@acme.test", Status: events.Active}}, sentry.PriorityJoiner)
	check("leaver during reconcile", sentry.WithPriority(context.Background(), sentry.PriorityReconcile), leaver("john.smith@acme.test"), sentry.PriorityReconcile)
}
