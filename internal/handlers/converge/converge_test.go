package converge_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

func setup(t *testing.T, seed *sentrytest.Seed, protected ...string) (*sentrytest.Server, *converge.Converger) {
	t.Helper()
	pol := policy.Default()
	pol.Protected = protected
	return setupPolicy(t, seed, pol, nil)
}

func setupPolicy(t *testing.T, seed *sentrytest.Seed, pol policy.Policy, snaps converge.Snapshots) (*sentrytest.Server, *converge.Converger) {
	t.Helper()
	sb := sentrytest.NewServer(t, sentrytest.Options{Seed: seed, RateLimit: -1})
	c, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: &safetytest.Gate{}, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conv, err := converge.New(converge.Options{Sentry: c, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole,
		Policy: func() policy.Policy { return pol }, Snapshots: snaps})
	if err != nil {
		t.Fatal(err)
	}
	return sb, conv
}

func leaver(email string) state.PersonRecord {
	return state.PersonRecord{Key: "email:" + email, Person: events.Person{Email: email, Status: events.Terminated}}
}

func held(context.Context) error { return nil }

func TestRemoval(t *testing.T) {
	seed := sentrytest.DemoSeed()
	seed.Members = append(seed.Members,
		sentrytest.SeedMember{Email: "svc-ci@acme.test", OrgRole: "member"},
	)
	cases := []struct {
		name     string
		email    string
		status   events.Status
		outcome  converge.Outcome
		gone     bool // the member is absent afterwards
		mutation string
		stepVia  string
		stepName string
	}{
		{"REST member", "jane.doe@acme.test", events.Terminated, converge.OutcomeApplied, true, "member.remove", "rest", "remove_member"},
		{"email case-insensitive", "Jane.Doe@ACME.test", events.Terminated, converge.OutcomeApplied, true, "member.remove", "rest", "remove_member"},
		{"suspended too", "jane.doe@acme.test", events.Suspended, converge.OutcomeApplied, true, "member.remove", "rest", "remove_member"},
		{"IdP-provisioned via SCIM", "john.smith@acme.test", events.Terminated, converge.OutcomeApplied, true, "member.remove", "scim", "remove_member"},
		{"pending invite", "new.hire@acme.test", events.Terminated, converge.OutcomeApplied, true, "member.remove", "rest", "delete_invite"},
		{"IdP pending invite via SCIM", "sam.scim@acme.test", events.Terminated, converge.OutcomeApplied, true, "member.remove", "scim", "delete_invite"},
		{"unknown person", "nobody@acme.test", events.Terminated, converge.OutcomeInSync, true, "", "", ""},
		{"secondary email is not a match", "jane@janedoe.example", events.Terminated, converge.OutcomeInSync, false, "", "", ""},
		{"owner outranks the manager service user", "olivia.owner@acme.test", events.Terminated, converge.OutcomeNeedsHuman, false, "", "", ""},
		{"the daemon's own member", "jml-bot@acme.test", events.Terminated, converge.OutcomeProtected, false, "", "", ""},
		{"protected exact", "maya.manager@acme.test", events.Terminated, converge.OutcomeProtected, false, "", "", ""},
		{"protected pattern", "svc-ci@acme.test", events.Terminated, converge.OutcomeProtected, false, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb, conv := setup(t, seed, "MAYA.manager@acme.test", `re:^svc-.*@acme\.test$`)
			tokensBefore := activeTokens(sb)
			rec := leaver(tc.email)
			rec.Person.Status = tc.status
			res, err := conv.Converge(context.Background(), rec, held)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tc.outcome {
				t.Fatalf("outcome %s (%s), want %s", res.Outcome, res.Reason, tc.outcome)
			}
			watch := tc.email
			if watch == "jane@janedoe.example" {
				watch = "jane.doe@acme.test" // the member whose secondary address was used
			}
			_, present := sb.Member(watch)
			if present == tc.gone {
				t.Fatalf("member present=%v, want gone=%v", present, tc.gone)
			}
			st := sb.Stats()
			removed := 0
			for _, n := range st.Mutations["member.remove"] {
				removed += n
			}
			if tc.mutation == "" {
				if removed != 0 {
					t.Fatalf("guarded case removed %d members: %v", removed, st.Mutations)
				}
				return
			}
			if n := activeTokens(sb); n != tokensBefore {
				t.Fatalf("tokens %d → %d under the default report policy", tokensBefore, n)
			}
			if removed != 1 || len(res.Steps) == 0 || res.Steps[0].Via != tc.stepVia || res.Steps[0].Action != tc.stepName || !res.Removed {
				t.Fatalf("removed=%d steps=%+v", removed, res.Steps)
			}
		})
	}
}

func TestIdempotentAndLeaseChecked(t *testing.T) {
	sb, conv := setup(t, nil)
	rec := leaver("jane.doe@acme.test")
	lost := errors.New("lease lost")
	_, err := conv.Converge(context.Background(), rec, func(context.Context) error { return lost })
	if !errors.Is(err, lost) {
		t.Fatalf("lost lease: %v", err)
	}
	if _, ok := sb.Member("jane.doe@acme.test"); !ok {
		t.Fatal("a worker without its lease removed the member")
	}
	for i, want := range []converge.Outcome{converge.OutcomeApplied, converge.OutcomeInSync} {
		res, err := conv.Converge(context.Background(), rec, held)
		if err != nil || res.Outcome != want {
			t.Fatalf("run %d: %s %v, want %s", i, res.Outcome, err, want)
		}
	}
	if n := sb.Stats().Mutations["member.remove"]["jane.doe@acme.test"]; n != 1 {
		t.Fatalf("removed %d times", n)
	}
}

func TestTransientAndPermanentErrors(t *testing.T) {
	sb, conv := setup(t, nil)
	rec := leaver("jane.doe@acme.test")
	sb.InjectFault(sentrytest.Fault{Pattern: "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/", Method: "DELETE", Status: 503})
	_, err := conv.Converge(context.Background(), rec, held)
	if err == nil || errors.Is(err, converge.ErrPermanent) || !sentry.IsTransient(err) {
		t.Fatalf("503: err = %v, want transient", err)
	}
	sb.ClearFaults()
	sb.InjectFault(sentrytest.Fault{Pattern: "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/", Method: "DELETE", Status: 400, Body: `{"detail":"Something odd."}`})
	_, err = conv.Converge(context.Background(), rec, held)
	if !errors.Is(err, converge.ErrPermanent) {
		t.Fatalf("400: err = %v, want permanent", err)
	}
	sb.ClearFaults()
	if res, err := conv.Converge(context.Background(), rec, held); err != nil || res.Outcome != converge.OutcomeApplied {
		t.Fatalf("after faults: %v %v", res, err)
	}
}

// twoMatches answers every lookup with two members: Sentry's email search matches
// invite emails and user emails, so an invite for an address that is also another
// member's user email yields two. The sandbox refuses such a seed, hence this stub;
// it records any mutation so the test can prove none happened.
type twoMatches struct {
	converge.Sentry // every other method panics if called
	mutations       int
}

func (s *twoMatches) FindMembersByEmail(context.Context, string) ([]sentry.Member, error) {
	return []sentry.Member{{ID: "1", Email: "dup@acme.test", OrgRole: "member"}, {ID: "2", Email: "old@acme.test", OrgRole: "member", User: &sentry.User{ID: "9", Email: "dup@acme.test"}}}, nil
}
func (s *twoMatches) DeleteMember(context.Context, string) error   { s.mutations++; return nil }
func (s *twoMatches) SCIMDeleteUser(context.Context, string) error { s.mutations++; return nil }

func TestDisputedMatchChangesNothing(t *testing.T) {
	stub := &twoMatches{}
	conv, err := converge.New(converge.Options{Sentry: stub, SelfMemberID: "100", SelfRole: "manager"})
	_ = conv
	if err != nil {
		t.Fatal(err)
	}
	res, err := conv.Converge(context.Background(), leaver("dup@acme.test"), held)
	if err != nil || res.Outcome != converge.OutcomeDisputed || stub.mutations != 0 {
		t.Fatalf("outcome %s err %v mutations %d", res.Outcome, err, stub.mutations)
	}
}

func activeTokens(sb *sentrytest.Server) int {
	n := 0
	for _, tok := range sb.OrgAuthTokens() {
		if tok.Active {
			n++
		}
	}
	return n
}

// With an Owner service user, an owner leaver is removed (a Manager service user
// gets needs_human for the same person, see TestRemoval).
func TestOwnerServiceUserRemovesOwners(t *testing.T) {
	sb := sentrytest.NewServer(t, sentrytest.Options{ServiceUser: "olivia.owner@acme.test", RateLimit: -1})
	c, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: &safetytest.Gate{}, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(context.Background())
	if err != nil || me.OrgRole != "owner" {
		t.Fatalf("service user %+v %v", me, err)
	}
	conv, err := converge.New(converge.Options{Sentry: c, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole})
	if err != nil {
		t.Fatal(err)
	}
	res, err := conv.Converge(context.Background(), leaver("oscar.owner@acme.test"), held)
	if err != nil || res.Outcome != converge.OutcomeApplied {
		t.Fatalf("owner leaver: %s %v (%s)", res.Outcome, err, res.Reason)
	}
	if _, ok := sb.Member("oscar.owner@acme.test"); ok {
		t.Fatal("owner not removed")
	}
	// The service user itself is never removed, even as the leaver.
	res, _ = conv.Converge(context.Background(), leaver("olivia.owner@acme.test"), held)
	if res.Outcome != converge.OutcomeProtected {
		t.Fatalf("self: %s", res.Outcome)
	}
}

// The lease is checked once per mutation, right before it leaves the client
// (after rate-limit waits): losing it by then sends nothing.
func TestLeaseCheckedRightBeforeTheRequest(t *testing.T) {
	sb, conv := setup(t, nil)
	calls := 0
	check := func(context.Context) error {
		calls++
		return state.ErrLeaseLost
	}
	_, err := conv.Converge(context.Background(), leaver("jane.doe@acme.test"), check)
	if !errors.Is(err, state.ErrLeaseLost) || errors.Is(err, converge.ErrPermanent) {
		t.Fatalf("err = %v, want a lease loss that is not permanent", err)
	}
	if _, ok := sb.Member("jane.doe@acme.test"); !ok {
		t.Fatal("the DELETE was sent after the lease was lost")
	}
	if calls != 1 {
		t.Fatalf("lease checked %d times, want 1 (right before sending)", calls)
	}
}
