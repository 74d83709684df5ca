package converge_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// human is a second API client, standing for a person changing Sentry by hand.
func human(t *testing.T, sb *sentrytest.Server) *sentry.Client {
	t.Helper()
	c, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: &safetytest.Gate{}, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRehireRestoresSnapshotTeamRolesAfterAcceptance: Sentry stores an
// invite's team roles as null ("Do not set team-roles when inviting",
// src/sentry/core/endpoints/organization_member/index.py), so a rehire's
// invite loses bob's platform: admin (platform is not in the policy). Once he
// accepts, convergence restores it from the access snapshot, once: a human
// lowering it later is left alone.
func TestRehireRestoresSnapshotTeamRolesAfterAcceptance(t *testing.T) {
	ctx := context.Background()
	snaps := &memSnapshots{}
	sb, conv := setupPolicy(t, nil, mustPolicy(t, ""), snaps)
	const who = "bob.martin@acme.test"
	if m, _ := sb.Member(who); m.Teams["platform"] != "admin" {
		t.Fatalf("seed: bob's platform role %q, want admin", m.Teams["platform"])
	}
	if _, err := conv.Converge(ctx, person(who, events.Terminated, nil), held); err != nil {
		t.Fatal(err)
	}
	active := person(who, events.Active, nil)
	if _, err := conv.Converge(ctx, active, held); err != nil {
		t.Fatal(err)
	}
	inv, ok := sb.Member(who)
	if !ok || !inv.Pending || !hasKey(inv.Teams, "platform") || inv.Teams["platform"] != "" {
		t.Fatalf("rehire invite %+v: want pending with platform stored null", inv)
	}
	snap, err := snaps.Latest(ctx, active.Key)
	if err != nil || snap.RegrantedTo != inv.ID || !snap.RestoredAt.IsZero() {
		t.Fatalf("snapshot after the rehire %+v (%v): want regranted_to %s", snap, err, inv.ID)
	}
	// While pending nothing can hold the role: no step.
	if res, err := conv.Converge(ctx, active, held); err != nil || len(res.Steps) != 0 {
		t.Fatalf("pending invite: steps %v, err %v", actions(res.Steps), err)
	}

	if _, err := sb.AcceptInvite(who); err != nil {
		t.Fatal(err)
	}
	plan, err := conv.Plan(ctx, active)
	if err != nil || !slices.Equal(actions(plan.Steps), []string{"set_team_role:platform=admin"}) {
		t.Fatalf("plan after acceptance %v (%v)", actions(plan.Steps), err)
	}
	if !strings.HasPrefix(plan.Steps[0].Why, "rehire: restoring team role from the access snapshot of ") ||
		!slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.HasPrefix(n, "rehire: restoring team role") }) {
		t.Fatalf("plan does not say why: step %+v notes %v", plan.Steps[0], plan.Notes)
	}
	res, err := conv.Converge(ctx, active, held)
	if err != nil || !slices.Equal(actions(res.Steps), []string{"set_team_role:platform=admin"}) || res.Steps[0].Result != "done" {
		t.Fatalf("converge after acceptance: %+v (%v)", res.Steps, err)
	}
	if m, _ := sb.Member(who); m.Pending || m.Teams["platform"] != "admin" {
		t.Fatalf("after restore: %+v", m)
	}
	if snap, _ := snaps.Latest(ctx, active.Key); snap.RestoredAt.IsZero() {
		t.Fatalf("snapshot not marked restored: %+v", snap)
	}

	// A human lowers it to contributor, which Sentry stores as null (the
	// minimum team role): only the restored mark tells it from the invite's
	// null, and convergence leaves it; the same after the team is re-added.
	h := human(t, sb)
	if _, err := h.SetTeamRole(ctx, inv.ID, "platform", "contributor"); err != nil {
		t.Fatal(err)
	}
	if m, _ := sb.Member(who); m.Teams["platform"] != "" {
		t.Fatalf("contributor stored as %q, want null", m.Teams["platform"])
	}
	if res, err := conv.Converge(ctx, active, held); err != nil || len(res.Steps) != 0 {
		t.Fatalf("after a human lowered it: steps %v (%v)", actions(res.Steps), err)
	}
	if err := h.RemoveMemberFromTeam(ctx, inv.ID, "platform"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddMemberToTeam(ctx, inv.ID, "platform"); err != nil {
		t.Fatal(err)
	}
	if res, err := conv.Converge(ctx, active, held); err != nil || len(res.Steps) != 0 {
		t.Fatalf("after a human re-added the team: steps %v (%v)", actions(res.Steps), err)
	}
	if m, _ := sb.Member(who); m.Teams["platform"] != "" {
		t.Fatalf("human's change reverted: %+v", m)
	}
}

// TestRehireRemovedAgainBeforeAcceptanceKeepsRoles: an invite removed again
// before it was accepted stored null roles only because Sentry does; the next
// snapshot keeps the roles the person really had, and the next rehire
// restores them.
func TestRehireRemovedAgainBeforeAcceptanceKeepsRoles(t *testing.T) {
	ctx := context.Background()
	snaps := &memSnapshots{}
	sb, conv := setupPolicy(t, nil, mustPolicy(t, ""), snaps)
	const who = "bob.martin@acme.test"
	leave, active := person(who, events.Terminated, nil), person(who, events.Active, nil)
	for _, rec := range []state.PersonRecord{leave, active, leave} {
		if _, err := conv.Converge(ctx, rec, held); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := sb.Member(who); ok {
		t.Fatal("the second leaver did not delete the invite")
	}
	if snap, err := snaps.Latest(ctx, leave.Key); err != nil || !snap.Pending || teamRole(snap, "platform") != "admin" || snap.RegrantedTo != "" {
		t.Fatalf("snapshot of the deleted invite %+v (%v): want platform admin carried over", snap, err)
	}
	if _, err := conv.Converge(ctx, active, held); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.AcceptInvite(who); err != nil {
		t.Fatal(err)
	}
	if _, err := conv.Converge(ctx, active, held); err != nil {
		t.Fatal(err)
	}
	if m, _ := sb.Member(who); m.Pending || m.Teams["platform"] != "admin" {
		t.Fatalf("after the second rehire and acceptance: %+v", m)
	}
}

// teamRole is a snapshot's stored role on slug ("" when none or absent).
func teamRole(s state.Snapshot, slug string) string {
	for _, t := range s.Teams {
		if t.Slug == slug {
			return t.Role
		}
	}
	return ""
}
