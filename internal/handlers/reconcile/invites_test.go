package reconcile_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

const invitesPolicy = `
rules:
  - match: {department: Payments}
    teams: [{slug: payments, role: admin}]
`

// The demo's new.hire invite is on payments without a team role; policy wants
// them team admin. The job leaves a pending invite alone, and sets the team
// role on the tick after the invite is accepted — once.
func TestInvitesApplyTeamRolesOnceAccepted(t *testing.T) {
	seed := sentrytest.DemoSeed()
	seed.Members = append(seed.Members, sentrytest.SeedMember{Email: "withdrawn@acme.test", Pending: true,
		Teams: map[string]string{"payments": ""}})
	h := mustHarness(t, seed, invitesPolicy)
	ctx := context.Background()
	h.person(t, "new.hire@acme.test", events.Active, "Payments")
	h.person(t, "withdrawn@acme.test", events.Active, "Payments")
	// contractor.temp is in nobody's directory: accepting does not make the
	// job converge them (orphans are reconcile's, under its brakes).

	sum, err := h.rec.Invites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Pending != 4 || sum.Accepted != 0 || sum.Expired != 0 || len(sum.Errors) != 0 {
		t.Fatalf("first tick = %+v, want 4 pending and nothing done", sum)
	}
	if nh := h.member("new.hire@acme.test"); nh == nil || !nh.Pending || nh.Teams["payments"] != "" {
		t.Fatalf("new.hire after the first tick = %+v, want a pending invite on payments without a role", nh)
	}

	for _, e := range []string{"new.hire@acme.test", "contractor.temp@acme.test"} {
		if _, err := h.sb.AcceptInvite(e); err != nil {
			t.Fatal(err)
		}
	}
	// Withdrawn (deleted), not accepted: not converged, not an error.
	if err := h.client.DeleteMember(ctx, h.member("withdrawn@acme.test").ID); err != nil {
		t.Fatal(err)
	}
	h.sb.ResetStats()
	sum, err = h.rec.Invites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Pending != 1 || sum.Accepted != 1 || !slices.Equal(sum.Converged, []string{"new.hire@acme.test"}) || len(sum.Errors) != 0 {
		t.Fatalf("tick after acceptance = %+v, want new.hire converged and nothing else", sum)
	}
	nh := h.member("new.hire@acme.test")
	if nh == nil || nh.Pending || nh.Teams["payments"] != "admin" || len(nh.Teams) != 1 {
		t.Fatalf("new.hire = %+v, want a member, payments team admin", nh)
	}
	muts := h.sb.Stats().Mutations
	want := map[string]map[string]int{"member.team-role": {"new.hire@acme.test": 1}}
	if !mapsEqual(muts, want) {
		t.Fatalf("mutations = %v, want only new.hire's team role", muts)
	}
	if ct := h.member("contractor.temp@acme.test"); ct == nil || len(ct.Teams) != 0 || ct.OrgRole != "member" {
		t.Fatalf("contractor.temp = %+v, want untouched", ct)
	}

	// The acceptance is handled once: the next tick does nothing.
	h.sb.ResetStats()
	sum, err = h.rec.Invites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Accepted != 0 || len(h.sb.Stats().Mutations) != 0 {
		t.Fatalf("third tick = %+v, mutations %v, want nothing", sum, h.sb.Stats().Mutations)
	}
}

// expiredSeed adds expired invites to the demo seed: an active joiner's (with
// a team role to keep), a leaver's, one of nobody in the directory and a
// protected one.
func expiredSeed() *sentrytest.Seed {
	seed := sentrytest.DemoSeed()
	old := time.Now().Add(-40 * 24 * time.Hour)
	seed.Members = append(seed.Members,
		sentrytest.SeedMember{Email: "late.joiner@acme.test", Pending: true, DateCreated: old, Teams: map[string]string{"payments": "admin"}},
		sentrytest.SeedMember{Email: "late.leaver@acme.test", Pending: true, DateCreated: old},
		sentrytest.SeedMember{Email: "late.stranger@acme.test", Pending: true, DateCreated: old},
		sentrytest.SeedMember{Email: "late.vip@acme.test", Pending: true, DateCreated: old},
	)
	return seed
}

func setupExpired(t *testing.T, pol string) *harness {
	t.Helper()
	h := mustHarness(t, expiredSeed(), pol)
	h.person(t, "late.joiner@acme.test", events.Active, "Payments")
	h.person(t, "late.vip@acme.test", events.Active, "")
	h.person(t, "late.leaver@acme.test", events.Terminated, "")
	h.person(t, "new.hire@acme.test", events.Active, "Payments")
	h.sb.ResetStats()
	return h
}

func (h *harness) expired(t *testing.T, email string) bool {
	t.Helper()
	mv := h.member(email)
	if mv == nil {
		t.Fatalf("%s is gone", email)
	}
	m, err := h.client.GetMember(context.Background(), mv.ID)
	if err != nil {
		t.Fatal(err)
	}
	return m.Pending && m.Expired
}

func TestInvitesResendExpiredInvitesOfActivePeople(t *testing.T) {
	h := setupExpired(t, invitesPolicy+"protected: [late.vip@acme.test]\n")
	ctx := context.Background()
	if !h.expired(t, "late.joiner@acme.test") || h.expired(t, "new.hire@acme.test") {
		t.Fatal("seed: late.joiner should be expired and new.hire not")
	}
	joinerID := h.member("late.joiner@acme.test").ID
	h.sb.ResetStats()
	sum, err := h.rec.Invites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Expired != 4 || sum.Resent != 1 || sum.Removed != 1 || sum.Reported != 1 || len(sum.Errors) != 0 {
		t.Fatalf("summary = %+v, want 4 expired: 1 resent, 1 removed (leaver), 1 reported (stranger)", sum)
	}
	// Re-sent: still an invite, no longer expired, its team role kept.
	if h.expired(t, "late.joiner@acme.test") {
		t.Error("late.joiner's invite is still expired")
	}
	lj := h.member("late.joiner@acme.test")
	if lj.ID != joinerID || !lj.Pending || lj.Teams["payments"] != "admin" || len(lj.Teams) != 1 {
		t.Errorf("late.joiner = %+v, want the same invite on payments as admin", lj)
	}
	reinvited := 0
	for _, e := range h.sb.AuditLog() {
		if e.Event == "member.reinvite" {
			reinvited++
			if e.TargetID != joinerID {
				t.Errorf("reinvite of %s, want only late.joiner (%s)", e.TargetID, joinerID)
			}
		}
	}
	if reinvited != 1 {
		t.Errorf("%d member.reinvite audit entries, want 1", reinvited)
	}
	// The leaver's expired invite is removed; the stranger's (orphans: report)
	// and the protected one stay, still expired; new.hire's is not expired.
	if h.member("late.leaver@acme.test") != nil {
		t.Error("late.leaver's expired invite is still there")
	}
	if !h.expired(t, "late.stranger@acme.test") || !h.expired(t, "late.vip@acme.test") {
		t.Error("the stranger's or the protected expired invite was changed")
	}
	muts := h.sb.Stats().Mutations
	if !mapsEqual(muts, map[string]map[string]int{"member.remove": {"late.leaver@acme.test": 1}, "member.reinvite": {"late.joiner@acme.test": 1}}) {
		t.Errorf("mutations = %v, want late.joiner's invite re-sent and late.leaver's removed, nothing else", muts)
	}

	// Nothing is expired any more but what policy keeps: the next tick does nothing.
	h.sb.ResetStats()
	again, err := h.rec.Invites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Expired != 2 || again.Resent != 0 || again.Removed != 0 || len(h.sb.Stats().Mutations) != 0 {
		t.Fatalf("second tick = %+v, mutations %v", again, h.sb.Stats().Mutations)
	}
}

func TestInvitesRemoveExpiredInvitesPerPolicy(t *testing.T) {
	h := setupExpired(t, invitesPolicy+`
protected: [late.vip@acme.test]
invites: {expired: remove}
reconcile: {orphans: remove}
`)
	sum, err := h.rec.Invites(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Expired != 4 || sum.Removed != 3 || sum.Resent != 0 || sum.Reported != 0 || len(sum.Errors) != 0 {
		t.Fatalf("summary = %+v, want 3 expired invites removed", sum)
	}
	for _, gone := range []string{"late.joiner@acme.test", "late.leaver@acme.test", "late.stranger@acme.test"} {
		if h.member(gone) != nil {
			t.Errorf("%s's expired invite is still there", gone)
		}
	}
	if !h.expired(t, "late.vip@acme.test") {
		t.Error("the protected expired invite was changed")
	}
	if h.member("new.hire@acme.test") == nil || h.member("contractor.temp@acme.test") == nil {
		t.Error("an unexpired invite was removed")
	}
	want := map[string]map[string]int{"member.remove": {"late.joiner@acme.test": 1, "late.leaver@acme.test": 1, "late.stranger@acme.test": 1}}
	if muts := h.sb.Stats().Mutations; !mapsEqual(muts, want) {
		t.Errorf("mutations = %v, want %v", muts, want)
	}
}

// A person the directory knows without a status (only a mover or update
// event so far) is not a leaver: their expired invite is neither removed nor
// re-sent, as convergence leaves people of unknown status alone.
func TestInvitesLeaveExpiredInvitesOfUnknownStatusAlone(t *testing.T) {
	for _, expired := range []string{"resend", "remove"} {
		t.Run(expired, func(t *testing.T) {
			h := mustHarness(t, expiredSeed(), "invites: {expired: "+expired+"}\nreconcile: {orphans: remove}\n")
			h.person(t, "late.joiner@acme.test", "", "Payments")
			h.sb.ResetStats()
			sum, err := h.rec.Invites(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if h.member("late.joiner@acme.test") == nil {
				t.Fatalf("the expired invite of a person of unknown status was removed: %+v", sum)
			}
			if !h.expired(t, "late.joiner@acme.test") {
				t.Fatalf("the expired invite of a person of unknown status was re-sent: %+v", sum)
			}
			if m := h.sb.Stats().Mutations["member.remove"]; m["late.joiner@acme.test"] != 0 || len(m) != 3 {
				t.Fatalf("removals = %v, want the three strangers' expired invites only (orphans: remove)", m)
			}
		})
	}
}
