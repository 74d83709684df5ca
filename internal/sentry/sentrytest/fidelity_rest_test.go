package sentrytest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Fidelity tests: each behaviour below is what Sentry's own source does; the
// comment names the file it comes from (getsentry/sentry).

// src/sentry/core/endpoints/organization_member_index.py: "Do not set
// team-roles when inviting" — the memberships are created with a null role.
func TestFidelityInviteStoresNullTeamRoles(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	expect(t, c.do("POST", membersURL, map[string]any{"email": "joiner@acme.test", "orgRole": "member",
		"teamRoles": []map[string]any{{"teamSlug": "payments", "role": "admin"}}}), 201, "")
	v, _ := srv.Member("joiner@acme.test")
	if fmt.Sprint(v.Teams) != "map[payments:]" {
		t.Fatalf("invite teams = %v, want payments with a null role", v.Teams)
	}
}

// src/sentry/core/endpoints/organization_member_index.py (validate_email):
// an approved pending invite is "already been invited" whatever reinvite says.
func TestFidelityPostReinviteIsRefused(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	expect(t, c.do("POST", membersURL, map[string]any{"email": "new.hire@acme.test", "reinvite": true}), 400,
		`{"email":["The user new.hire@acme.test has already been invited"]}`)
	if srv.Stats().Mutations["member.reinvite"]["new.hire@acme.test"] != 0 {
		t.Fatal("a POST re-sent the invite")
	}
}

// src/sentry/core/endpoints/organization_member_index.py: AllowedEmailField is
// Django's EmailValidator, which wants a dotted domain (or localhost).
func TestFidelityInviteEmailValidation(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	for _, e := range []string{"a@b", "no-at-sign", "a@b.", "a b@acme.test"} {
		expect(t, c.do("POST", membersURL, map[string]any{"email": e}), 400, `{"email":["Enter a valid email address."]}`)
	}
	expect(t, c.do("POST", membersURL, map[string]any{"email": "ok@localhost"}), 201, "")
	expect(t, c.do("POST", membersURL, map[string]any{"email": strings.Repeat("x", 70) + "@a.test"}), 400, "no more than 75 characters")
}

// src/sentry/core/endpoints/organization_member_details.py: the team set is
// saved before the org-role checks, so a refused role change keeps the team
// changes of the same request.
func TestFidelityPutIsNotTransactional(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	olivia := memberID(t, srv.Sandbox, "olivia.owner@acme.test")
	expect(t, c.do("PUT", membersURL+olivia+"/", map[string]any{"orgRole": "member",
		"teamRoles": []map[string]any{{"teamSlug": "data", "role": "admin"}}}), 403,
		`{"role":"You do not have permission to assign a role to the given user."}`)
	v, _ := srv.Member("olivia.owner@acme.test")
	if v.OrgRole != "owner" || fmt.Sprint(v.Teams) != "map[data:admin]" {
		t.Fatalf("after the refused PUT: role %s teams %v; want owner with the new team set saved", v.OrgRole, v.Teams)
	}
}

// src/sentry/core/endpoints/organization_member_details.py: the
// idp:role-restricted check is disabled ("Reenable idp lockout once all scim
// role bugs are resolved"), so the PUT changes the role.
func TestFidelityPutIgnoresRoleRestriction(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	ivan := memberID(t, srv.Sandbox, "ivan.petrov@acme.test")
	expect(t, c.do("PUT", membersURL+ivan+"/", map[string]any{"orgRole": "manager"}), 200, `"orgRole":"manager"`)
}

// src/sentry/core/endpoints/organization_member_utils.py (save_team_assignments
// stores the role given) and organization_member_details.py (_change_org_role
// never saves the nulled roles): contributor stays contributor.
func TestFidelityContributorIsStored(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	jane := memberID(t, srv.Sandbox, "jane.doe@acme.test")
	r := c.do("PUT", membersURL+jane+"/", map[string]any{"orgRole": "member",
		"teamRoles": []map[string]any{{"teamSlug": "payments", "role": "contributor"}}})
	expect(t, r, 200, `"teamRoles":[{"teamSlug":"payments","role":"contributor"}]`)
	expect(t, c.do("PUT", membersURL+jane+"/", map[string]any{"orgRole": "manager",
		"teamRoles": []map[string]any{{"teamSlug": "payments", "role": "contributor"}}}), 200, `"role":"contributor"`)
}

// src/sentry/core/endpoints/organization_member_details.py: a reinvite with
// other fields is refused; an expired invite needs regenerate.
func TestFidelityReinviteRules(t *testing.T) {
	clk := newClock()
	srv := NewServer(t, Options{RateLimit: -1, Now: clk.Now})
	c := newClient(t, srv)
	id := memberID(t, srv.Sandbox, "new.hire@acme.test")
	expect(t, c.do("PUT", membersURL+id+"/", map[string]any{"reinvite": true, "teamRoles": []any{}}), 403, msgEditWhenReinviting)
	clk.Add(31 * 24 * time.Hour)
	expect(t, c.do("PUT", membersURL+id+"/", map[string]any{"reinvite": true}), 400, msgExpiredInvite)
	expect(t, c.do("PUT", membersURL+id+"/", map[string]any{"reinvite": true, "regenerate": true}), 200, `"expired":false`)
}

// src/sentry/core/endpoints/organization_member_team_details.py: a partial
// serializer; {} is a 200 that changes nothing, and a role at or below the
// org role's minimum is stored as null.
func TestFidelityTeamRolePut(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	jane := memberID(t, srv.Sandbox, "jane.doe@acme.test")
	before, _ := srv.Member("jane.doe@acme.test")
	expect(t, c.do("PUT", membersURL+jane+"/teams/payments/", map[string]any{}), 200, `"isActive":true`)
	after, _ := srv.Member("jane.doe@acme.test")
	if fmt.Sprint(before.Teams) != fmt.Sprint(after.Teams) {
		t.Fatalf("{} changed %v to %v", before.Teams, after.Teams)
	}
	expect(t, c.do("PUT", membersURL+jane+"/teams/payments/", map[string]any{"teamRole": "contributor"}), 200, `"teamRole":null`)
	expect(t, c.do("PUT", membersURL+jane+"/teams/payments/", map[string]any{"teamRole": "boss"}), 400, `{"teamRole":["\"boss\" is not a valid choice."]}`)
}

// src/sentry/middleware/ratelimit.py: {"detail": ...} in a Django
// HttpResponse, Content-Type text/html.
func TestFidelityRateLimitBody(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: 1})
	c := newClient(t, srv)
	c.get(membersURL + "me/")
	r := c.get(membersURL + "me/")
	expect(t, r, 429, `{"detail":"You are attempting to use this endpoint too frequently. Limit is 1 requests in 1 seconds"}`)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q", ct)
	}
}

// src/sentry/api/paginator.py (OffsetPaginator) and src/sentry/utils/cursors.py:
// rows start at offset*value, so 0:100:0 is the first page and 2:1:0 the
// second page of two.
func TestFidelityOffsetCursor(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	all := c.get(membersURL).list(t)
	first := c.get(membersURL + "?cursor=0:100:0").list(t)
	if len(first) != len(all) || first[0]["id"] != all[0]["id"] {
		t.Fatalf("0:100:0 gave %d rows, want the first page (%d)", len(first), len(all))
	}
	second := c.get(membersURL + "?per_page=2&cursor=2:1:0").list(t)
	if len(second) != 2 || second[0]["id"] != all[2]["id"] {
		t.Fatalf("2:1:0 = %v, want rows 3-4", second)
	}
}

// src/sentry/api/invite_helper.py (accept_invite): the member gets the user,
// the team memberships stay (null roles from the invite), and a
// member.accept-invite entry names the user as actor.
func TestFidelityAcceptInvite(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	expect(t, c.do("POST", membersURL, map[string]any{"email": "joiner@acme.test",
		"teamRoles": []map[string]any{{"teamSlug": "payments", "role": "admin"}}}), 201, "")
	v, err := srv.AcceptInvite("joiner@acme.test")
	if err != nil || v.Pending || v.UserID == "" || fmt.Sprint(v.Teams) != "map[payments:]" {
		t.Fatalf("accepted = %+v, %v", v, err)
	}
	log := srv.AuditLog()
	last := log[len(log)-1]
	if last.Event != "member.accept-invite" || last.ActorUserID != v.UserID || last.TargetID != v.ID {
		t.Fatalf("audit entry = %+v", last)
	}
}

const teamsURL = "/api/0/organizations/acme/teams/"

// lastAudit returns the newest audit entries with event ev (newest last).
func auditOf(s *Sandbox, ev string) []AuditEntry {
	var out []AuditEntry
	for _, e := range s.AuditLog() {
		if e.Event == ev {
			out = append(out, e)
		}
	}
	return out
}

// src/sentry/core/endpoints/team_details.py (get): organization is expanded
// unless ?collapse=organization; projects only with ?expand=projects.
func TestFidelityTeamGetIncludesOrganization(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	got := c.get("/api/0/teams/acme/payments/").obj(t)
	org, ok := got["organization"].(map[string]any)
	if !ok || org["slug"] != "acme" {
		t.Fatalf("organization = %v", got["organization"])
	}
	if _, has := got["projects"]; has {
		t.Fatal("projects present without expand")
	}
	got = c.get("/api/0/teams/acme/payments/?collapse=organization&expand=projects").obj(t)
	if _, has := got["organization"]; has {
		t.Fatal("organization present although collapsed")
	}
	if ps, ok := got["projects"].([]any); !ok || len(ps) == 0 {
		t.Fatalf("projects = %v", got["projects"])
	}
}

// src/sentry/core/endpoints/organization_teams.py (get): detailed (the
// default) expands projects and externalTeams, detailed=0 neither; a
// non-integer id: filter is a ParseError.
func TestFidelityTeamListExpansions(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	for _, tm := range c.get(teamsURL).list(t) {
		if _, ok := tm["projects"].([]any); !ok {
			t.Fatalf("detailed team %v without projects", tm["slug"])
		}
		if et, ok := tm["externalTeams"].([]any); !ok || len(et) != 0 {
			t.Fatalf("detailed team %v externalTeams = %v", tm["slug"], tm["externalTeams"])
		}
	}
	for _, tm := range c.get(teamsURL + "?detailed=0").list(t) {
		if _, has := tm["projects"]; has {
			t.Fatal("detailed=0 has projects")
		}
		if _, has := tm["externalTeams"]; has {
			t.Fatal("detailed=0 has externalTeams")
		}
	}
	expect(t, c.get(teamsURL+"?query=id:abc"), 400, `{"detail":"Invalid id value"}`)
}

// src/sentry/core/endpoints/organization_teams.py (post): the creating user
// joins the team with a null team role (OrganizationMemberTeam created
// without a role), member.join-team is written before team.create, a name
// alone gets a unique slug, a taken slug is a 409, and {} is a
// non_field_errors 400.
func TestFidelityTeamCreate(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	expect(t, c.do("POST", teamsURL, map[string]any{"slug": "growth"}), 201, `"teamRole":null`)
	bot, _ := srv.Member("jml-bot@acme.test")
	if r, on := bot.Teams["growth"]; !on || r != "" {
		t.Fatalf("creator teams = %v, want growth with a null role", bot.Teams)
	}
	join, create := auditOf(srv.Sandbox, "member.join-team"), auditOf(srv.Sandbox, "team.create")
	if len(join) == 0 || len(create) == 0 || join[len(join)-1].Data["team_slug"] != "growth" ||
		create[len(create)-1].Data["slug"] != "growth" || create[len(create)-1].Data["status"] != 0 {
		t.Fatalf("audit join=%v create=%v", join, create)
	}
	if a, b := join[len(join)-1].ID, create[len(create)-1].ID; a >= b && len(a) == len(b) {
		t.Fatalf("member.join-team (%s) not before team.create (%s)", a, b)
	}
	expect(t, c.do("POST", teamsURL, map[string]any{"slug": "growth"}), 409,
		`{"detail":"A team with this slug already exists.","non_field_errors":["A team with this slug already exists."]}`)
	r := c.do("POST", teamsURL, map[string]any{"name": "Growth"}).obj(t)
	if s, _ := r["slug"].(string); !strings.HasPrefix(s, "growth-") || r["name"] != "Growth" {
		t.Fatalf("name-only create on a taken slug = %v", r)
	}
	expect(t, c.do("POST", teamsURL, map[string]any{}), 400, `{"non_field_errors":["Name or slug is required"]}`)
	expect(t, c.do("POST", teamsURL, map[string]any{"slug": "Bad Slug"}), 400, `{"slug":["Enter a valid slug`)
}

// src/sentry/core/endpoints/team_members.py: approved members of the
// organization ordered by their stored email then the membership id —
// pending invites (which keep an email) first, then members (email null
// once a user is attached) in join order.
func TestFidelityTeamMembersOrder(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	expect(t, c.do("POST", membersURL, map[string]any{"email": "aaa.joiner@acme.test",
		"teamRoles": []map[string]any{{"teamSlug": "data", "role": nil}}}), 201, "")
	zed := memberID(t, srv.Sandbox, "olivia.owner@acme.test")
	expect(t, c.do("POST", membersURL+zed+"/teams/data/", nil), 201, "")
	rows := c.get("/api/0/teams/acme/data/members/").list(t)
	if len(rows) < 2 || rows[0]["email"] != "aaa.joiner@acme.test" || rows[0]["user"] != nil {
		t.Fatalf("first row = %v, want the pending invite", rows[0])
	}
	if last := rows[len(rows)-1]; last["email"] != "olivia.owner@acme.test" {
		t.Fatalf("last row = %v, want the member who joined last", last["email"])
	}
}

// src/sentry/core/endpoints/team_details.py (delete): 204; the slug is
// released at once and team.remove carries the renamed, pending-deletion team.
func TestFidelityTeamDelete(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv).as("olivia.owner@acme.test")
	expect(t, c.do("DELETE", "/api/0/teams/acme/data/", nil), 204, "")
	expect(t, c.get("/api/0/teams/acme/data/"), 404, "")
	rm := auditOf(srv.Sandbox, "team.remove")
	if len(rm) != 1 || !strings.HasPrefix(fmt.Sprint(rm[0].Data["slug"]), "data-") || rm[0].Data["status"] != 1 {
		t.Fatalf("team.remove = %v", rm)
	}
	expect(t, c.do("POST", teamsURL, map[string]any{"slug": "data"}), 201, `"slug":"data"`)
}

const tokensURL = "/api/0/organizations/acme/org-auth-tokens/"

// src/sentry/api/endpoints/org_auth_tokens.py and org_auth_token_details.py:
// the list is ordered by last use (never used last), then name, then newest;
// it never shows the secret (only tokenLastCharacters); a blank name is a 400
// with the message in a list, a name is not trimmed; create and delete write
// org-auth-token.create/remove with {name, scopes}; a deleted token is a 404.
func TestFidelityOrgAuthTokens(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	expect(t, c.do("POST", tokensURL, map[string]any{}), 400, `{"detail":["The name cannot be blank."]}`)
	expect(t, c.do("POST", tokensURL, map[string]any{"name": ""}), 400, `{"detail":["The name cannot be blank."]}`)
	expect(t, c.do("POST", tokensURL, map[string]any{"name": strings.Repeat("n", 256)}), 400,
		`{"detail":["Ensure this value has at most 255 characters (it has 256)."]}`)
	var ids []string
	for _, n := range []string{"zeta", " alpha", "mid"} {
		r := c.do("POST", tokensURL, map[string]any{"name": n}).obj(t)
		if r["name"] != n || !strings.HasPrefix(fmt.Sprint(r["token"]), "sntrys_") {
			t.Fatalf("created %v", r)
		}
		ids = append(ids, r["id"].(string))
	}
	var names []string
	for _, tok := range c.get(tokensURL).list(t) {
		if _, has := tok["token"]; has {
			t.Fatal("the list shows a token's secret")
		}
		if tok["dateLastUsed"] == nil {
			names = append(names, tok["name"].(string))
		}
	}
	if i, j, k := indexOf(names, " alpha"), indexOf(names, "mid"), indexOf(names, "zeta"); i < 0 || !(i < j && j < k) {
		t.Fatalf("never-used tokens in order %q, want by name", names)
	}
	expect(t, c.get(tokensURL+ids[0]+"/"), 200, `"name":"zeta"`)
	expect(t, c.do("DELETE", tokensURL+ids[0]+"/", nil), 204, "")
	expect(t, c.do("DELETE", tokensURL+ids[0]+"/", nil), 404, "")
	cr, rm := auditOf(srv.Sandbox, "org-auth-token.create"), auditOf(srv.Sandbox, "org-auth-token.remove")
	if len(rm) != 1 || rm[0].Data["name"] != "zeta" || fmt.Sprint(rm[0].Data["scopes"]) != "[org:ci]" ||
		cr[len(cr)-1].Data["name"] != "mid" {
		t.Fatalf("audit create=%v remove=%v", cr, rm)
	}
}

func indexOf(list []string, v string) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return -1
}

// src/sentry/core/endpoints/project_index.py: GET /api/0/projects/ lists the
// projects of the user's teams, newest first (DateTimePaginator on
// -date_added), each with its organization; project_details.py serves one
// project (404 when unknown).
func TestFidelityProjectIndexAndDetails(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv).as("jane.doe@acme.test")
	mine := c.get("/api/0/projects/").list(t)
	jane, _ := srv.Member("jane.doe@acme.test")
	if len(mine) == 0 {
		t.Fatal("no projects for jane")
	}
	prev := ""
	for _, p := range mine {
		ok := false
		for _, tm := range p["teams"].([]any) {
			if _, on := jane.Teams[tm.(map[string]any)["slug"].(string)]; on {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("project %v is not on one of jane's teams %v", p["slug"], jane.Teams)
		}
		if org, _ := p["organization"].(map[string]any); org["slug"] != "acme" {
			t.Fatalf("project without organization: %v", p["organization"])
		}
		if d := p["dateCreated"].(string); prev != "" && d > prev {
			t.Fatalf("not newest first: %s after %s", d, prev)
		}
		prev = p["dateCreated"].(string)
	}
	all := newClient(t, srv).as("olivia.owner@acme.test").get("/api/0/projects/?per_page=1")
	if len(all.list(t)) != 1 || !strings.Contains(all.header.Get("Link"), `rel="next"; results="true"`) {
		t.Fatalf("per_page=1 page: %d rows, Link %q", len(all.list(t)), all.header.Get("Link"))
	}
	// DetailedProjectSerializer: the details carry the organization and the
	// project settings (defaults for a new project).
	detail := c.get("/api/0/projects/acme/checkout-api/")
	expect(t, detail, 200, `"slug":"checkout-api"`)
	var pd map[string]any
	if err := json.Unmarshal(detail.body, &pd); err != nil {
		t.Fatal(err)
	}
	if org, _ := pd["organization"].(map[string]any); org["slug"] != "acme" || org["id"] == nil {
		t.Fatalf("project details without organization: %v", pd["organization"])
	}
	if pd["subjectTemplate"] != "$shortID - $title" || pd["securityToken"] == "" || pd["dataScrubber"] != true {
		t.Fatalf("project details without Sentry's defaults: %v %v %v", pd["subjectTemplate"], pd["securityToken"], pd["dataScrubber"])
	}
	expect(t, c.get("/api/0/projects/acme/nope/"), 404, `{"detail":"The requested resource does not exist"}`)
}

// src/sentry/core/endpoints/project_team_details.py: an unknown team is 404
// "Team does not exist."; POST 201 / DELETE 200 write project-team.add /
// project-team.remove with {team_slug, project_slug} every time.
func TestFidelityProjectTeam(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	u := "/api/0/projects/acme/checkout-api/teams/"
	expect(t, c.do("POST", u+"nope/", nil), 404, `{"detail":"Team does not exist."}`)
	expect(t, c.do("POST", u+"data/", nil), 201, `"slug":"data"`)
	expect(t, c.do("POST", u+"data/", nil), 201, `"slug":"data"`)
	expect(t, c.do("DELETE", u+"data/", nil), 200, `"slug":"checkout-api"`)
	add, rm := auditOf(srv.Sandbox, "project-team.add"), auditOf(srv.Sandbox, "project-team.remove")
	if len(add) != 2 || len(rm) != 1 || add[0].Data["team_slug"] != "data" || rm[0].Data["project_slug"] != "checkout-api" {
		t.Fatalf("audit add=%v remove=%v", add, rm)
	}
	if srv.Stats().Mutations["project-team.add"]["checkout-api/data"] != 1 {
		t.Fatal("a repeated add counted as a mutation")
	}
}

// src/sentry/core/endpoints/organization_auditlogs.py and
// src/sentry/audit_log/register.py: {rows, options} newest first, an
// unknown event name is an empty page (not a 400), a non-integer actor is a
// 400, DateTimePaginator cursors page without overlap; the sandbox's member
// mutations write Sentry's event names and get_audit_log_data fields.
func TestFidelityAuditLog(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	const au = "/api/0/organizations/acme/audit-logs/"
	expect(t, c.do("POST", membersURL, map[string]any{"email": "joiner@acme.test",
		"teamRoles": []map[string]any{{"teamSlug": "payments", "role": "admin"}}}), 201, "")
	inv := auditOf(srv.Sandbox, "member.invite")
	d := inv[len(inv)-1].Data
	if d["email"] != "joiner@acme.test" || d["invite_status"] != "approved" || fmt.Sprint(d["teams_slugs"]) != "[payments]" ||
		d["role"] != "member" || d["user"] != nil {
		t.Fatalf("member.invite data = %v", d)
	}
	id := memberID(t, srv.Sandbox, "joiner@acme.test")
	expect(t, c.do("DELETE", membersURL+id+"/", nil), 204, "")
	rm := auditOf(srv.Sandbox, "member.remove")
	if d := rm[len(rm)-1].Data; d["email"] != "joiner@acme.test" || fmt.Sprint(d["teams_slugs"]) != "[payments]" {
		t.Fatalf("member.remove data = %v", d)
	}
	body := c.get(au).obj(t)
	rows, _ := body["rows"].([]any)
	opts, _ := body["options"].([]any)
	if len(rows) == 0 || len(opts) == 0 || rows[0].(map[string]any)["event"] != "member.remove" {
		t.Fatalf("audit-logs body: %d rows, %d options, first %v", len(rows), len(opts), rows[0])
	}
	expect(t, c.get(au+"?event=no.such-event"), 200, `"rows":[]`)
	expect(t, c.get(au+"?actor=x"), 400, `{"actor":["A valid integer is required."]}`)
	seen := map[string]bool{}
	next := au + "?per_page=2"
	for pages := 0; next != "" && pages < 100; pages++ {
		r := c.get(next)
		for _, row := range r.obj(t)["rows"].([]any) {
			id := row.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("row %s on two pages", id)
			}
			seen[id] = true
		}
		next = ""
		for _, part := range strings.Split(r.header.Get("Link"), ",") {
			if strings.Contains(part, `rel="next"; results="true"`) {
				u := part[strings.Index(part, "<")+1 : strings.Index(part, ">")]
				next = u[strings.Index(u, "/api/0/"):]
			}
		}
	}
	if len(seen) != len(srv.AuditLog()) {
		t.Fatalf("paged %d rows, log has %d", len(seen), len(srv.AuditLog()))
	}
}

// src/sentry/models/organizationmember.py (get_allowed_org_roles_to_invite)
// with src/sentry/conf/server.py (SENTRY_ROLES order = priority): a manager
// may assign any role up to manager — billing (the lowest) included — but
// not owner; the retired admin is refused on invite.
func TestFidelityManagerAssignableRoles(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv) // jml-bot, a manager
	for _, role := range []string{"billing", "member", "manager"} {
		expect(t, c.do("POST", membersURL, map[string]any{"email": role + ".hire@acme.test", "orgRole": role}), 201, `"orgRole":"`+role+`"`)
	}
	expect(t, c.do("POST", membersURL, map[string]any{"email": "owner.hire@acme.test", "orgRole": "owner"}), 400,
		"You do not have permission to set that org-level role")
	expect(t, c.do("POST", membersURL, map[string]any{"email": "admin.hire@acme.test", "orgRole": "admin"}), 400, "deprecated")
	jane := memberID(t, srv.Sandbox, "jane.doe@acme.test")
	expect(t, c.do("PUT", membersURL+jane+"/", map[string]any{"orgRole": "billing", "teamRoles": []any{}}), 200, `"orgRole":"billing"`)
}
