package policy_test

import (
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
)

func TestExplainNamesTheRuleBehindEachGrant(t *testing.T) {
	pol, err := policy.Parse("t", []byte(`
default_org_role: member
rules:
  - match: {department: Engineering}
    teams: [{slug: backend}]
  - name: sre on-call
    match: {groups: "re:^sre-"}
    org_role: manager
    teams: [{slug: backend, role: admin}, {slug: ops}]
  - match: {department: Sales}
    org_role: manager
`))
	if err != nil {
		t.Fatal(err)
	}
	p := events.Person{Email: "a@x.test", Department: "Engineering", Groups: []string{"all", "sre-eu"}}
	ex := pol.Explain(p)
	if ex.OrgRole != "manager" || ex.OrgRoleFrom.Rule != "sre on-call" || ex.OrgRoleFrom.Matched["groups"] != "sre-eu" {
		t.Fatalf("org role from = %+v (role %s)", ex.OrgRoleFrom, ex.OrgRole)
	}
	if got := ex.TeamsFrom["backend"]; got.Rule != "sre on-call" || ex.Teams["backend"] != "admin" {
		t.Fatalf("backend from %+v role %q", got, ex.Teams["backend"])
	}
	if got := ex.TeamsFrom["ops"].String(); got != "sre on-call (groups=sre-eu)" {
		t.Fatalf("ops from %q", got)
	}
	if len(ex.Matched) != 2 || ex.Matched[0].Rule != "rules[0]" || ex.Matched[0].Matched["department"] != "Engineering" {
		t.Fatalf("matched %+v", ex.Matched)
	}
	if d := pol.Evaluate(p); d.OrgRole != ex.OrgRole || len(d.Teams) != len(ex.Teams) {
		t.Fatalf("Explain disagrees with Evaluate: %+v vs %+v", ex.Desired, d)
	}
	none := pol.Explain(events.Person{Email: "b@x.test"})
	if none.OrgRoleFrom.Rule != "default_org_role" || none.OrgRoleFrom.Index != -1 || len(none.TeamsFrom) != 0 {
		t.Fatalf("default explanation %+v", none)
	}
}
