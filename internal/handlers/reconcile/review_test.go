package reconcile_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

const reviewPolicy = `
protected: [maya.manager@acme.test]
sso: {required: true}
managed_teams: [mobile]
rules:
  - match: {department: Payments}
    teams: [{slug: payments, role: admin}]
`

// setupReview puts a few demo members in the directory; everyone else is an
// orphan (or protected).
func setupReview(t *testing.T) *harness {
	t.Helper()
	h := mustHarness(t, sentrytest.DemoSeed(), reviewPolicy)
	h.person(t, "jane.doe@acme.test", events.Active, "Payments")     // mobile is managed, not granted
	h.person(t, "alice.nguyen@acme.test", events.Active, "Payments") // payments: contributor → admin
	h.person(t, "george.miller@acme.test", events.Active, "")        // agrees (payments is not managed)
	h.person(t, "john.smith@acme.test", events.Active, "")           // agrees; IdP member on an IdP team
	h.person(t, "nora.jensen@acme.test", events.Active, "")          // no SSO
	h.person(t, "bob.martin@acme.test", events.Terminated, "")       // leaver
	h.person(t, "olivia.owner@acme.test", events.Terminated, "")     // leaver the daemon may not remove
	h.person(t, "fatima.khan@acme.test", events.Active, "")
	// Two more directory people (HR ids) claim fatima's member too: three claimants.
	for _, id := range []string{"hr-42", "hr-43"} {
		p := events.Person{ID: id, Email: "fatima.khan@acme.test", Status: events.Active, Groups: []string{}}
		v := state.Version{OccurredAt: time.Now().UTC(), Source: "test", Seq: uint64(time.Now().UnixNano())}
		if _, _, err := h.records.Directory.Apply(context.Background(), p.Key(), p, v, "test"); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// seedProjectTeams: project slug → its teams, from the demo seed.
func seedProjectTeams() map[string][]string {
	out := map[string][]string{}
	for _, p := range sentrytest.DemoSeed().Projects {
		out[p.Slug] = p.Teams
	}
	return out
}

func effectiveRole(orgRole, stored string) string {
	if stored == "admin" || orgRole == "owner" || orgRole == "manager" || orgRole == "admin" {
		return "admin"
	}
	return "contributor"
}

// TestAccessReviewMatchesTheSandbox checks every row against the sandbox's
// state (org role, teams and effective team roles, projects and the teams
// that reach them, flags) and the classification and policy verdict of the
// members the directory describes.
func TestAccessReviewMatchesTheSandbox(t *testing.T) {
	h := setupReview(t)
	rows, err := h.rec.Review(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	members := h.sb.Members()
	if len(rows) != len(members) {
		t.Fatalf("%d rows, want one per member and invite (%d)", len(rows), len(members))
	}
	projTeams := seedProjectTeams()
	byEmail := map[string]reconcile.ReviewRow{}
	for _, r := range rows {
		byEmail[r.Email] = r
	}
	for _, m := range members {
		r, ok := byEmail[m.Email]
		if !ok {
			t.Errorf("no row for %s", m.Email)
			continue
		}
		if r.MemberID != m.ID || r.OrgRole != m.OrgRole || r.Pending != m.Pending || r.SSOLinked != m.Flags["sso:linked"] ||
			r.IdP != m.Flags["idp:provisioned"] {
			t.Errorf("%s: row %+v disagrees with the sandbox %+v", m.Email, r, m)
		}
		teams := map[string]string{}
		for _, ta := range r.Teams {
			teams[ta.Slug] = ta.Role
			if ta.IdP != (ta.Slug == "okta-engineering") {
				t.Errorf("%s: team %s idp = %v", m.Email, ta.Slug, ta.IdP)
			}
		}
		if !slices.IsSortedFunc(r.Teams, func(a, b reconcile.TeamAccess) int { return strings.Compare(a.Slug, b.Slug) }) {
			t.Errorf("%s: teams not sorted: %+v", m.Email, r.Teams)
		}
		wantTeams := map[string]string{}
		for slug, stored := range m.Teams {
			wantTeams[slug] = effectiveRole(m.OrgRole, stored)
		}
		if !maps.Equal(teams, wantTeams) {
			t.Errorf("%s: teams = %v, want %v", m.Email, teams, wantTeams)
		}
		wantVia := map[string][]string{}
		for p, pts := range projTeams {
			for _, slug := range pts {
				if _, on := m.Teams[slug]; on {
					wantVia[p] = append(wantVia[p], slug)
				}
			}
		}
		gotVia := map[string][]string{}
		for _, pa := range r.Projects {
			gotVia[pa.Slug] = pa.Via
		}
		if !maps.EqualFunc(gotVia, wantVia, func(a, b []string) bool { return slices.Equal(a, slices.Sorted(slices.Values(b))) }) {
			t.Errorf("%s: projects = %v, want %v", m.Email, gotVia, wantVia)
		}
	}

	type verdict struct {
		class  string
		status string
		agrees bool
		diffs  []string
	}
	sso := "sso.required: SSO not linked"
	want := map[string]verdict{
		"jane.doe@acme.test":      {reconcile.ClassLinked, "active", false, []string{"remove_team mobile"}},
		"alice.nguyen@acme.test":  {reconcile.ClassLinked, "active", false, []string{"set_team_role payments role=admin from=contributor"}},
		"george.miller@acme.test": {reconcile.ClassLinked, "active", true, nil},
		"john.smith@acme.test":    {reconcile.ClassLinked, "active", true, nil},
		"nora.jensen@acme.test":   {reconcile.ClassLinked, "active", false, []string{sso}},
		"bob.martin@acme.test":    {reconcile.ClassLinked, "terminated", false, []string{"remove_member role=member"}},
		"jml-bot@acme.test":       {reconcile.ClassProtected, "", true, nil}, // the daemon itself, without SSO
		"maya.manager@acme.test":  {reconcile.ClassProtected, "", true, nil},
		"ethan.hunt@acme.test":    {reconcile.ClassOrphan, "", false, []string{"not in the directory (orphan)"}},
		"quentin.dubois@acme.test": {reconcile.ClassOrphan, "", false,
			[]string{"not in the directory (orphan)", sso}},
		// Pending invites are not expected to have linked SSO.
		"new.hire@acme.test": {reconcile.ClassOrphan, "", false, []string{"not in the directory (orphan)"}},
	}
	for email, w := range want {
		r := byEmail[email]
		if r.Class != w.class || r.Status != w.status || r.PolicyAgrees != w.agrees || !slices.Equal(r.Differences, w.diffs) {
			t.Errorf("%s: class=%s status=%q agrees=%v differences=%q\nwant class=%s status=%q agrees=%v differences=%q",
				email, r.Class, r.Status, r.PolicyAgrees, r.Differences, w.class, w.status, w.agrees, w.diffs)
		}
	}
	// Three directory people claim fatima's member: disputed, whatever order
	// the directory lists them in, and the row says why.
	if r := byEmail["fatima.khan@acme.test"]; r.Class != reconcile.ClassDisputed || r.PolicyAgrees ||
		len(r.Differences) != 1 || !strings.HasPrefix(r.Differences[0], "disputed: ") {
		t.Errorf("fatima.khan: class=%s agrees=%v differences=%q, want disputed, disagreeing, with the reason", r.Class, r.PolicyAgrees, r.Differences)
	}
	// The owner leaver cannot be removed by the daemon: policy disagrees, and
	// the row says why.
	if r := byEmail["olivia.owner@acme.test"]; r.Class != reconcile.ClassLinked || r.PolicyAgrees || len(r.Differences) != 1 ||
		!strings.Contains(r.Differences[0], "outranks the service user") {
		t.Errorf("olivia.owner: agrees=%v differences=%q, want linked, disagreeing, with the reason", r.PolicyAgrees, r.Differences)
	}
	// Spot checks against the seed, by hand.
	jane := byEmail["jane.doe@acme.test"]
	if got := jane.Projects; len(got) != 4 || got[0].Slug != "android-app" || got[3].Slug != "ledger" || !slices.Equal(got[3].Via, []string{"payments"}) {
		t.Errorf("jane.doe projects = %+v", got)
	}
	olivia := byEmail["olivia.owner@acme.test"]
	if got := olivia.Projects; len(got) != 2 || got[0].Slug != "auth-gateway" || !slices.Equal(got[0].Via, []string{"platform", "security"}) {
		t.Errorf("olivia.owner projects = %+v, want auth-gateway via platform and security first", got)
	}
	if nh := byEmail["new.hire@acme.test"]; len(nh.Teams) != 1 || nh.Teams[0].Slug != "payments" || len(nh.Projects) != 2 {
		t.Errorf("new.hire (pending) = %+v, want the invite's team payments and its two projects", nh)
	}
}

func TestAccessReviewJSON(t *testing.T) {
	h := setupReview(t)
	rows, err := h.rec.Review(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// As GET /v1/access/review serves it.
	b, err := json.Marshal(map[string]any{"members": rows})
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Members []map[string]json.RawMessage `json:"members"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	rowOf := func(email string) map[string]json.RawMessage {
		for _, m := range out.Members {
			if string(m["email"]) == `"`+email+`"` {
				return m
			}
		}
		t.Fatalf("no JSON row for %s", email)
		return nil
	}
	jane := rowOf("jane.doe@acme.test")
	for k, v := range map[string]string{
		"org_role":      `"member"`,
		"pending":       `false`,
		"sso_linked":    `true`,
		"teams":         `[{"slug":"mobile","role":"contributor"},{"slug":"payments","role":"admin"}]`,
		"projects":      `[{"slug":"android-app","via":["mobile"]},{"slug":"checkout-api","via":["payments"]},{"slug":"ios-app","via":["mobile"]},{"slug":"ledger","via":["payments"]}]`,
		"person":        `"email:jane.doe@acme.test"`,
		"status":        `"active"`,
		"class":         `"linked"`,
		"policy_agrees": `false`,
		"differences":   `["remove_team mobile"]`,
	} {
		if got := string(jane[k]); got != v {
			t.Errorf("jane.doe %s = %s, want %s", k, got, v)
		}
	}
	if id := string(jane["member_id"]); id != `"`+h.member("jane.doe@acme.test").ID+`"` {
		t.Errorf("jane.doe member_id = %s", id)
	}
	// A member without projects has an empty list, not null; an IdP team says so.
	john := rowOf("john.smith@acme.test")
	if got := string(john["teams"]); got != `[{"slug":"okta-engineering","role":"contributor","idp_provisioned":true},{"slug":"platform","role":"contributor"}]` {
		t.Errorf("john.smith teams = %s", got)
	}
	if got := string(rowOf("jml-bot@acme.test")["teams"]); got != `[]` {
		t.Errorf("jml-bot teams = %s, want []", got)
	}
	if got := string(rowOf("nora.jensen@acme.test")["projects"]); got != `[]` {
		t.Errorf("nora.jensen projects = %s, want []", got)
	}
	if _, has := rowOf("george.miller@acme.test")["differences"]; has {
		t.Error("a row policy agrees with lists differences")
	}
}

func TestAccessReviewCSV(t *testing.T) {
	h := setupReview(t)
	rows, err := h.rec.Review(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := reconcile.WriteReviewCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := []string{"member_id", "email", "org_role", "pending", "sso_linked", "idp_provisioned", "teams", "projects",
		"person", "status", "class", "policy_agrees", "differences", "last_login", "grants"}
	if len(recs) == 0 || !slices.Equal(recs[0], header) {
		t.Fatalf("header = %q, want %q", recs[0], header)
	}
	if len(recs) != len(h.sb.Members())+1 {
		t.Fatalf("%d CSV records, want a header and one per member (%d)", len(recs), len(h.sb.Members()))
	}
	byEmail := map[string]map[string]string{}
	for _, rec := range recs[1:] {
		m := map[string]string{}
		for i, col := range header {
			m[col] = rec[i]
		}
		byEmail[m["email"]] = m
	}
	want := map[string]map[string]string{
		"jane.doe@acme.test": {"member_id": h.member("jane.doe@acme.test").ID, "org_role": "member", "pending": "false",
			"sso_linked": "true", "idp_provisioned": "false", "teams": "mobile:contributor;payments:admin",
			"projects": "android-app<mobile;checkout-api<payments;ios-app<mobile;ledger<payments",
			"person":   "email:jane.doe@acme.test", "status": "active", "class": "linked", "policy_agrees": "false",
			"differences": "remove_team mobile"},
		"olivia.owner@acme.test": {"org_role": "owner", "teams": "platform:admin;security:admin",
			"projects": "auth-gateway<platform+security;web-frontend<platform", "status": "terminated", "policy_agrees": "false"},
		"john.smith@acme.test": {"idp_provisioned": "true", "teams": "okta-engineering:contributor;platform:contributor",
			"projects": "auth-gateway<platform;web-frontend<platform", "class": "linked", "policy_agrees": "true", "differences": ""},
		"quentin.dubois@acme.test": {"sso_linked": "false", "teams": "", "projects": "", "person": "", "class": "orphan",
			"differences": "not in the directory (orphan); sso.required: SSO not linked"},
		"new.hire@acme.test": {"pending": "true", "teams": "payments:contributor", "projects": "checkout-api<payments;ledger<payments"},
		"jml-bot@acme.test":  {"org_role": "manager", "class": "protected", "policy_agrees": "true", "differences": ""},
	}
	for email, cols := range want {
		got, ok := byEmail[email]
		if !ok {
			t.Errorf("no CSV row for %s", email)
			continue
		}
		for col, v := range cols {
			if got[col] != v {
				t.Errorf("%s %s = %q, want %q", email, col, got[col], v)
			}
		}
	}
}

// With sso.required, a run reports every accepted member without sso:linked
// (not pending invites, not the daemon itself), and changes nothing for it.
func TestSSOReport(t *testing.T) {
	seed := sentrytest.DemoSeed()
	seed.Members = append(seed.Members, sentrytest.SeedMember{Email: "no.sso@acme.test", Flags: []string{"idp:provisioned"}})
	for _, required := range []bool{true, false} {
		h := mustHarness(t, seed, `protected: ["re:.*"]`)
		h.pol.SSO.Required = required
		h.sb.ResetStats()
		sum, err := h.rec.Run(context.Background(), reconcile.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range sum.Reports {
			if r.Kind == "sso_unlinked" {
				got = append(got, r.Email)
				if mv := h.member(r.Email); mv == nil || r.MemberID != mv.ID {
					t.Errorf("report %+v names the wrong member", r)
				}
			}
		}
		slices.Sort(got)
		var want []string
		if required {
			want = []string{"no.sso@acme.test", "nora.jensen@acme.test", "quentin.dubois@acme.test"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("sso.required=%v: reported %v, want %v", required, got, want)
		}
		if m := h.sb.Stats().Mutations; len(m) != 0 {
			t.Errorf("sso.required=%v: the report changed Sentry: %v", required, m)
		}
	}
}

// The review an auditor accepts: everyone in the directory appears (people
// with no Sentry member as no_access), each grant names the policy rule and
// the HR attribute behind it, and Sentry's user.lastLogin is shown
// (src/sentry/api/serializers/models/user.py serializes last_login as
// lastLogin inside each member's user).
func TestAccessReviewCompleteWithGrantsAndLastLogin(t *testing.T) {
	seed := sentrytest.DemoSeed()
	login := time.Date(2026, 10, 1, 8, 30, 0, 0, time.UTC)
	found := false
	for i := range seed.Members {
		if seed.Members[i].Email == "jane.doe@acme.test" {
			seed.Members[i].LastLogin, found = &login, true
		}
	}
	if !found {
		t.Fatal("jane is not in the demo seed")
	}
	h := mustHarness(t, seed, reviewPolicy)
	h.person(t, "jane.doe@acme.test", events.Active, "Payments")
	h.person(t, "zed.newcomer@acme.test", events.Active, "Payments") // no member yet
	h.person(t, "gone.leaver@acme.test", events.Terminated, "")      // removed already
	rows, err := h.rec.Review(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(h.sb.Members())+2 {
		t.Fatalf("%d rows, want one per member plus the 2 directory people without one (%d members)", len(rows), len(h.sb.Members()))
	}
	by := map[string]reconcile.ReviewRow{}
	for _, r := range rows {
		by[r.Email] = r
	}
	jane := by["jane.doe@acme.test"]
	if jane.LastLogin == nil || !jane.LastLogin.Equal(login) {
		t.Errorf("jane's last login = %v, want %v", jane.LastLogin, login)
	}
	if by["george.miller@acme.test"].LastLogin != nil {
		t.Error("a user who never logged in has no last login")
	}
	var pay *reconcile.Grant
	for i, g := range jane.Grants {
		if g.Access == "team payments admin" {
			pay = &jane.Grants[i]
		}
	}
	if pay == nil || pay.Rule != "rules[0]" || pay.Matched["department"] != "Payments" {
		t.Errorf("jane's payments grant must name rules[0] and department=Payments: %+v", jane.Grants)
	}
	if len(jane.Grants) == 0 || jane.Grants[0].Access != "org_role member" || jane.Grants[0].Rule != "default_org_role" {
		t.Errorf("jane's org role grant: %+v", jane.Grants)
	}
	nh := by["zed.newcomer@acme.test"]
	if nh.Class != reconcile.ClassNoAccess || nh.MemberID != "" || nh.PolicyAgrees || len(nh.Differences) == 0 || len(nh.Grants) < 2 {
		t.Errorf("an active person without a member: %+v", nh)
	}
	gl := by["gone.leaver@acme.test"]
	if gl.Class != reconcile.ClassNoAccess || !gl.PolicyAgrees || gl.Status != "terminated" || len(gl.Grants) != 0 {
		t.Errorf("a leaver without a member: %+v", gl)
	}
}
