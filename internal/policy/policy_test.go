package policy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
)

func TestLoadExample(t *testing.T) {
	p, err := policy.Load("../../deploy/compose/policy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Organization != "acme" || len(p.Protected) != 2 || len(p.Rules) != 2 || p.Rules[1].OrgRole != "manager" ||
		p.Rules[0].Teams[0].Slug != "payments" || p.Reconcile.MaxRemovalRatio != 0.10 || p.Brakes.MaxEventRemovalsPerMinute != 30 {
		t.Fatalf("unexpected policy %+v", p)
	}
}

func TestDefaults(t *testing.T) {
	p := policy.Default()
	if p.DefaultOrgRole != "member" || p.Leaver.OrgTokens != "report" || p.Suspend != "remove" ||
		p.Brakes.MaxEventRemovalsPerMinute != 30 || p.Brakes.Approvals != 1 || p.Reconcile.Orphans != "report" || p.Reconcile.MaxRemovals != 25 || p.Reconcile.MaxRemovalRatio != 0.10 {
		t.Fatalf("defaults %+v", p)
	}
	p, err := policy.Parse("empty.yaml", nil)
	if err != nil || p.DefaultOrgRole != "member" {
		t.Fatalf("empty file: %+v %v", p, err)
	}
}

func TestValidationNamesFileLineField(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"owner", "organization: acme\nrules:\n  - match: {group: x}\n    org_role: owner\n", "bad.yaml:4: rules[0].org_role"},
		{"admin", "default_org_role: admin\n", "bad.yaml:1: default_org_role"},
		{"billing teams", "default_org_role: billing\nrules:\n  - match: {department: Finance}\n    org_role: billing\n    teams: [{slug: payments}]\n", "bad.yaml:5: rules[0].teams"},
		// Issue 16: billing ranks below member, so with the default member this
		// rule silently lost; it is refused, naming the rule.
		{"billing never wins", "default_org_role: member\nrules:\n  - match: {department: Finance}\n    org_role: billing\n", "bad.yaml:4: rules[0].org_role"},
		{"member under manager default", "default_org_role: manager\nrules:\n  - match: {group: x}\n  - match: {group: y}\n    org_role: member\n", "bad.yaml:5: rules[1].org_role"},
		{"team role", "rules:\n  - match: {department: X}\n    teams:\n      - {slug: a, role: owner}\n", "bad.yaml:4: rules[0].teams[0].role"},
		{"bad regexp", "protected: [ok@a.co, \"re:(\"]\n", "bad.yaml:1: protected[1]"},
		{"suspend", "suspend: delete\n", "bad.yaml:1: suspend"},
		{"ratio", "reconcile:\n  max_removal_ratio: 2\n", "bad.yaml:2: reconcile.max_removal_ratio"},
		{"schedule", "reconcile:\n  max_removals: 5\n  schedule: \"every hour\"\n", "bad.yaml:3: reconcile.schedule"},
		{"schedule fields", "reconcile: {schedule: \"61 * * * *\"}\n", "bad.yaml:1: reconcile.schedule"},
		{"approvals", "brakes:\n  approvals: 3\n", "bad.yaml:2: brakes.approvals"},
		{"approvals negative", "brakes: {approvals: -1}\n", "bad.yaml:1: brakes.approvals"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Parse("bad.yaml", []byte(tc.yaml))
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *policy.Error", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %q, want prefix %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{"0 * * * *", "*/15 2-5 * * 1-5", "30 0 * * * *", "@daily"} {
		if _, err := policy.Parse("ok.yaml", []byte("reconcile: {schedule: \""+ok+"\"}\n")); err != nil {
			t.Fatalf("schedule %q refused: %v", ok, err)
		}
	}
	if _, err := policy.Parse("bad.yaml", []byte("orgnization: acme\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("unknown key: %v", err)
	}
}

// TestBillingByDefault: the way to give billing to some people is a billing
// default with higher roles granted by rules; a billing rule then validates,
// and the highest matching role wins.
func TestBillingByDefault(t *testing.T) {
	p, err := policy.Parse("ok.yaml", []byte("default_org_role: billing\nrules:\n  - match: {department: Finance}\n    org_role: billing\n  - match: {department: Engineering}\n    org_role: member\n    teams: [{slug: backend}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Evaluate(events.Person{Department: "Finance"}); d.OrgRole != "billing" || len(d.Teams) != 0 {
		t.Errorf("finance: %+v", d)
	}
	if d := p.Evaluate(events.Person{Department: "Engineering"}); d.OrgRole != "member" || len(d.Teams) != 1 {
		t.Errorf("engineering: %+v", d)
	}
	_, err = policy.Parse("bad.yaml", []byte("rules:\n  - match: {department: Finance}\n    org_role: billing\n"))
	if err == nil || !strings.Contains(err.Error(), "can never grant it") {
		t.Fatalf("a billing rule under the member default: %v", err)
	}
}

func TestBrakesApprovals(t *testing.T) {
	p, err := policy.Parse("two.yaml", []byte("brakes: {approvals: 2}\n"))
	if err != nil || p.Brakes.Approvals != 2 {
		t.Fatalf("approvals 2: %+v %v", p.Brakes, err)
	}
}

// TestIdPProfileFeedsDepartmentAndTitle: department: and title: rules match
// the SCIM enterprise extension's and Okta profile's values when the directory
// has no HR value (IdP-only shops); an HR value wins; the scim.*/okta.*
// attributes stay matchable by name; Explain names the value that matched.
func TestIdPProfileFeedsDepartmentAndTitle(t *testing.T) {
	p, err := policy.Parse("p.yaml", []byte(`rules:
  - name: payments
    match: {department: Payments}
    teams: [{slug: payments}]
  - name: managers
    match: {title: "re:(?i)manager"}
    org_role: manager
  - name: okta-raw
    match: {okta.department: Payments}
    teams: [{slug: okta-raw}]
`))
	if err != nil {
		t.Fatal(err)
	}
	scim := events.Person{Email: "a@acme.test", Attributes: map[string]string{"scim.department": "Payments", "scim.title": "Engineering Manager"}}
	if d := p.Evaluate(scim); d.OrgRole != "manager" || len(d.Teams) != 1 {
		t.Errorf("SCIM-only person: %+v", d)
	}
	okta := events.Person{Email: "b@acme.test", Attributes: map[string]string{"okta.department": "Payments", "okta.title": "Engineer"}}
	if d := p.Evaluate(okta); d.OrgRole != "member" || len(d.Teams) != 2 {
		t.Errorf("Okta-only person: %+v", d)
	}
	hr := events.Person{Email: "c@acme.test", Department: "Finance", Attributes: map[string]string{"scim.department": "Payments"}}
	if d := p.Evaluate(hr); len(d.Teams) != 0 {
		t.Errorf("the HR department must win over the IdP's: %+v", d)
	}
	if policy.ProfileValue(scim, "department") != "Payments" || policy.ProfileValue(okta, "title") != "Engineer" {
		t.Error("ProfileValue")
	}
}

// Issue 18: out_of_band chooses per kind what happens to a change made in
// Sentry by hand; revert by default, and a leaver's access is never adopted.
func TestOutOfBand(t *testing.T) {
	p := policy.Default()
	if p.OutOfBand != (policy.OutOfBand{ManagedTeams: "revert", OrgRole: "revert", Leavers: "revert"}) {
		t.Fatalf("defaults: %+v", p.OutOfBand)
	}
	p, err := policy.Parse("ok.yaml", []byte("out_of_band: {managed_teams: adopt, org_role: report, leavers: report}\n"))
	if err != nil || p.OutOfBand != (policy.OutOfBand{ManagedTeams: "adopt", OrgRole: "report", Leavers: "report"}) {
		t.Fatalf("parsed %+v, %v", p.OutOfBand, err)
	}
	for _, c := range []struct{ yaml, want string }{
		{"out_of_band:\n  leavers: adopt\n", "bad.yaml:2: out_of_band.leavers"},
		{"out_of_band:\n  org_role: ignore\n", "bad.yaml:2: out_of_band.org_role"},
		{"out_of_band:\n  managed_teams: Revert\n", "bad.yaml:2: out_of_band.managed_teams"},
		{"out_of_band:\n  tokens: revert\n", "tokens"},
	} {
		if _, err := policy.Parse("bad.yaml", []byte(c.yaml)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error naming %s", c.yaml, err, c.want)
		}
	}
}
