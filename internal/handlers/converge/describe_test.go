package converge

import (
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// TestDescribePendingInvite: a pending invite's PUT sets role and whole team
// set at once (Sentry's member PUT replaces the team set:
// src/sentry/core/endpoints/organization_member/details.py); the step says
// what really changes — a team removed — not "set_org_role manager → manager".
func TestDescribePendingInvite(t *testing.T) {
	role := "contributor"
	in := planInput{
		person:  events.Person{Email: "new@acme.test", Status: events.Active},
		desired: policy.Desired{OrgRole: "manager", Teams: map[string]string{"payments": "contributor"}},
		pol:     policy.Policy{ManagedTeams: []string{"payments", "mobile"}},
		member: &sentry.Member{ID: "9", Email: "new@acme.test", OrgRole: "manager", Pending: true, Teams: []string{"payments", "mobile"},
			TeamRoles: []sentry.TeamRole{{TeamSlug: "payments", Role: &role}, {TeamSlug: "mobile", Role: &role}}},
		teams:   func(string) teamInfo { return teamInfo{exists: true} },
		selfRol: "manager",
	}
	res := planActive(in)
	if len(res.Steps) != 1 {
		t.Fatalf("steps %+v", res.Steps)
	}
	if got := res.Steps[0].Describe(); got != "pending invite: team mobile removed" {
		t.Fatalf("Describe() = %q", got)
	}
}

func TestDescribeSteps(t *testing.T) {
	for _, tc := range []struct {
		s    Step
		want string
	}{
		{Step{Action: ActRemoveTeam, Team: "payments"}, "team payments removed"},
		{Step{Action: ActAddTeam, Team: "mobile"}, "team mobile added"},
		{Step{Action: ActSetTeamRole, Team: "data", From: "contributor", Role: "admin"}, "team data role contributor → admin"},
		{Step{Action: ActSetOrgRole, From: "member", Role: "manager"}, "org role member → manager"},
		{Step{Action: ActInvite, Role: "member", Teams: []string{"a", "b"}}, "invite as member to teams a, b"},
		{Step{Action: ActRemoveMember, Role: "member", Via: "scim"}, "member removed from the organization (role member, via scim)"},
		{Step{Action: ActSetOrgRole, Invite: true, From: "member", Role: "manager", FromTeams: []string{"a"}, Teams: []string{"a", "b"}},
			"pending invite: org role member → manager, team b added"},
	} {
		if got := tc.s.Describe(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.s, got, tc.want)
		}
	}
}
