package reconcile_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// memSnapshots and memEvidence are map-backed stores for the converger this
// test wires (the durable ones have their own tests in internal/state).
type memSnapshots struct {
	mu sync.Mutex
	m  map[string]state.Snapshot
}

func (s *memSnapshots) Put(_ context.Context, snap state.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]state.Snapshot{}
	}
	s.m[snap.PersonKey] = snap
	return nil
}

func (s *memSnapshots) Latest(_ context.Context, key string) (state.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.m[key]
	if !ok {
		return state.Snapshot{}, state.ErrNotFound
	}
	return snap, nil
}

type memEvidence struct {
	mu  sync.Mutex
	all []state.Evidence
}

func (e *memEvidence) Append(_ context.Context, ev state.Evidence) (state.Evidence, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
	return ev, nil
}

// TestReconcileRestoresARehiresTeamRoles: bob (platform: admin, a team the
// policy does not manage) leaves and is rehired; Sentry stores the invite's
// team roles as null (src/sentry/core/endpoints/organization_member/index.py).
// After he accepts, the scheduled reconcile, not an event, restores admin from
// the access snapshot, says why in the evidence, and does it only once.
func TestReconcileRestoresARehiresTeamRoles(t *testing.T) {
	const pol = `
managed_teams: [payments]
rules:
  - match: {department: Payments}
    teams: [{slug: payments}]
`
	ctx := context.Background()
	h := mustHarness(t, nil, pol)
	snaps, ev := &memSnapshots{}, &memEvidence{}
	me, err := h.client.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conv, err := converge.New(converge.Options{Sentry: h.client, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole,
		Policy: func() policy.Policy { return *h.pol }, Snapshots: snaps, Evidence: ev})
	if err != nil {
		t.Fatal(err)
	}
	h.opts.Converger = conv
	if h.rec, err = reconcile.New(h.opts); err != nil {
		t.Fatal(err)
	}
	const who = "bob.martin@acme.test"
	ok := func(context.Context) error { return nil }
	h.person(t, who, events.Terminated, "")
	rec, err := h.records.Directory.Get(ctx, events.Person{Email: who}.Key())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conv.Converge(ctx, rec, ok); err != nil {
		t.Fatal(err)
	}
	h.person(t, who, events.Active, "")
	rec.Person.Status = events.Active
	if _, err := conv.Converge(ctx, rec, ok); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sb.AcceptInvite(who); err != nil {
		t.Fatal(err)
	}
	if m := h.member(who); m == nil || m.Pending || m.Teams["platform"] != "" {
		t.Fatalf("accepted rehire %+v: want platform stored null", m)
	}

	sum, err := h.rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := h.member(who); m.Teams["platform"] != "admin" {
		t.Fatalf("after reconcile (counts %+v): bob's platform role %q, want admin restored", sum.Counts, m.Teams["platform"])
	}
	restored := slices.ContainsFunc(ev.all, func(e state.Evidence) bool {
		var steps []converge.Step
		if err := json.Unmarshal(e.Steps, &steps); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(steps, func(s converge.Step) bool {
			return s.Action == converge.ActSetTeamRole && s.Team == "platform" && s.Result == "done" &&
				strings.HasPrefix(s.Why, "rehire: restoring team role from the access snapshot of ")
		})
	})
	if !restored {
		t.Fatalf("no evidence of the restoration: %+v", ev.all)
	}
	if snap, _ := snaps.Latest(ctx, rec.Key); snap.RestoredAt.IsZero() {
		t.Fatalf("snapshot not marked restored: %+v", snap)
	}

	// A human lowers it to contributor, which Sentry stores as null (the
	// minimum team role): only the restored mark tells it from the invite's
	// null, and the next run leaves it.
	bob := h.member(who)
	if _, err := h.client.SetTeamRole(ctx, bob.ID, "platform", "contributor"); err != nil {
		t.Fatal(err)
	}
	if m := h.member(who); m.Teams["platform"] != "" {
		t.Fatalf("contributor stored as %q, want null", m.Teams["platform"])
	}
	before := len(ev.all)
	if _, err := h.rec.Run(ctx, reconcile.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := h.member(who); m.Teams["platform"] != "" {
		t.Fatalf("a human's change was reverted: %+v", m)
	}
	if len(ev.all) != before {
		t.Fatalf("the second run changed something: %+v", ev.all[before:])
	}
}
