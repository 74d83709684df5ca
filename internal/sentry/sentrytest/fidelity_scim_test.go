package sentrytest

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// These tests pin the sandbox's SCIM endpoints to Sentry's. Each cites the
// Sentry file whose behaviour it checks (getsentry/sentry, read file by file;
// the SCIM endpoints moved from src/sentry/scim/endpoints/ to
// src/sentry/core/endpoints/scim/ without changing these behaviours).

const scimErr = `"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"]`

func scimQ(path string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return path + "?" + v.Encode()
}

// src/sentry/core/endpoints/scim/utils.py (SCIMApiError): a SCIM error body
// is exactly {schemas, detail}, no "status".
func TestFidelitySCIMErrorBodyShape(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	r := c.get(scimUsers + "/424242")
	expect(t, r, 404, scimErr)
	o := r.obj(t)
	if len(o) != 2 || o["detail"] != "The requested resource does not exist" || o["schemas"] == nil {
		t.Fatalf("404 body = %v", o)
	}
	r = c.get(scimGroups + "/424242")
	if o := r.obj(t); r.status != 404 || len(o) != 2 || o["detail"] != "Group not found." {
		t.Fatalf("group 404 = %d %v", r.status, o)
	}
}

// src/sentry/core/endpoints/scim/utils.py (get_query_parameters raises
// ParseError(serializer.errors)): bad startIndex/count are DRF's plain field
// errors; an invalid or blank filter is the SCIM invalidFilter body; a
// "value" filter that is not a number raises ValueError outside the
// SCIMFilterError handler (500). src/sentry/api/paginator.py
// (GenericOffsetPaginator asserts limit > 0): count=0 is a 500.
// src/sentry/api/base.py (get_per_page): count is the default page size and
// raises the cap to max(100, count), so count above 100 is honoured.
func TestFidelitySCIMQueryValidation(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{scimQ(scimUsers, "startIndex", "0"), 400, `{"startIndex":["Ensure this value is greater than or equal to 1."]}`},
		{scimQ(scimUsers, "startIndex", "x"), 400, `{"startIndex":["A valid integer is required."]}`},
		{scimQ(scimUsers, "count", "-1"), 400, `{"count":["Ensure this value is greater than or equal to 0."]}`},
		{scimQ(scimGroups, "count", "abc"), 400, `{"count":["A valid integer is required."]}`},
		{scimQ(scimUsers, "filter", ""), 400, `"scimType":"invalidFilter"`},
		{scimQ(scimUsers, "filter", `userName eq "a",x`, "startIndex", "0"), 400, `"scimType":"invalidFilter"`},
		{scimQ(scimUsers, "filter", `value eq "abc"`), 500, `Internal Error`},
		{scimQ(scimUsers, "count", "0"), 500, `Internal Error`},
		{scimQ(scimUsers, "per_page", "x"), 400, `{"detail":"Invalid per_page parameter."}`},
		{scimQ(scimUsers, "per_page", "101"), 400, `Cannot exceed 100.`},
	} {
		r := c.get(tc.path)
		expect(t, r, tc.status, tc.body)
		if tc.status == 400 && strings.Contains(tc.body, "Ensure") && strings.Contains(string(r.body), "schemas") {
			t.Fatalf("%s: paging error is a SCIM body: %s", tc.path, r.body)
		}
	}
	var list struct {
		TotalResults, ItemsPerPage int
	}
	c.get(scimQ(scimUsers, "count", "150")).json(t, &list)
	if list.ItemsPerPage != list.TotalResults || list.TotalResults <= 0 {
		t.Fatalf("count=150: %+v", list)
	}
	// A filter whose value strips to "" (Python's value[1:-1]) is no filter.
	c.get(scimQ(scimUsers, "filter", `userName eq x`)).json(t, &list)
	if list.TotalResults != len(srv.Members()) {
		t.Fatalf("empty filter value: total %d", list.TotalResults)
	}
}

// src/sentry/core/endpoints/scim/members.py (order_by("email", "id")):
// pending invites first by email, then members by id; the filter matches an
// invite's email or any email of a member's user.
func TestFidelitySCIMUsersOrderAndFilter(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	var list struct {
		TotalResults int
		Resources    []map[string]any
	}
	c.get(scimQ(scimUsers, "count", "200")).json(t, &list)
	seenMember := false
	var lastEmail string
	var lastID int
	for _, u := range list.Resources {
		v, _ := srv.Member(u["userName"].(string))
		var id int
		fmt.Sscan(u["id"].(string), &id)
		if v.Pending {
			if seenMember {
				t.Fatalf("invite %s after a member", v.Email)
			}
			if v.Email < lastEmail {
				t.Fatalf("invites not by email at %s", v.Email)
			}
			lastEmail = v.Email
			continue
		}
		if seenMember && id < lastID {
			t.Fatalf("members not by id at %s", v.Email)
		}
		seenMember, lastID = true, id
	}
	if !seenMember || lastEmail == "" {
		t.Fatal("want both invites and members")
	}
	// jane's unverified secondary email finds her membership.
	c.get(scimQ(scimUsers, "filter", `userName eq "j.doe@old-acme.test"`)).json(t, &list)
	if list.TotalResults != 1 || list.Resources[0]["userName"] != "jane.doe@acme.test" {
		t.Fatalf("secondary email filter = %+v", list)
	}
}

// src/sentry/core/endpoints/scim/members.py (SCIMPatchRequestSerializer,
// patch, _should_delete_member): serializer errors are json.dumps'd into the
// SCIM detail; an empty Operations list answers 200 with the user; the first
// operation decides, so active=false first deletes even if later ops are
// junk; "active" as a path is case-sensitive.
func TestFidelitySCIMUserPatch(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	for _, tc := range []struct {
		email, body string
		status      int
		want        string
	}{
		{"bob.martin@acme.test", `{}`, 400, `"detail":"{\"Operations\":[\"This field is required.\"]}"`},
		{"bob.martin@acme.test", `{"Operations":{}}`, 400, `Expected a list of items but got type \\\"dict\\\".`},
		{"bob.martin@acme.test", `{"Operations":[{"op":"add","value":false},{"op":"replace"}]}`, 400,
			`{\"Operations\":{\"0\":{\"op\":[\"\\\"add\\\" is not a valid choice\"]},\"1\":{\"value\":[\"This field is required.\"]}}}`},
		{"bob.martin@acme.test", `{"Operations":[]}`, 200, `"userName":"bob.martin@acme.test"`},
		{"bob.martin@acme.test", `{"Operations":[{"op":"replace","path":"Active","value":false}]}`, 400, `"detail":"Invalid Patch Operation."`},
		{"bob.martin@acme.test", `{"Operations":[{"op":"replace","path":"displayName","value":true},{"op":"replace","path":"active","value":false}]}`, 400, `Invalid Patch Operation.`},
		{"bob.martin@acme.test", `{"Operations":[{"op":"REPLACE","path":"active","value":false},{"op":"replace","path":"x","value":true}]}`, 204, ""},
		{"carlos.garcia@acme.test", `{"Operations":[{"op":"replace","path":"anything","value":{"active":"FALSE"}}]}`, 204, ""},
	} {
		r := c.do("PATCH", scimUsers+"/"+memberID(t, srv.Sandbox, tc.email), tc.body)
		expect(t, r, tc.status, tc.want)
		if _, still := srv.Member(tc.email); still == (tc.status == 204) {
			t.Fatalf("%s: member present = %v after %s", tc.email, still, tc.body)
		}
	}
}

// src/sentry/core/endpoints/scim/members.py (post, put): the role is
// lower-cased but not trimmed; an approved pending invite is "already a
// member" (409); PUT never changes an owner; a blank role leaves an
// unrestricted non-default role alone and resets a restricted one to member.
func TestFidelitySCIMUserPostPut(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	expect(t, c.do("POST", scimUsers, `{"userName":"x@acme.test","sentryOrgRole":" admin"}`), 400, `"detail":"Invalid organization role."`)
	expect(t, c.do("POST", scimUsers, `{"sentryOrgRole":"member"}`), 400, `{\"email\":[\"This field may not be null.\"]}`)
	expect(t, c.do("POST", scimUsers, `{"userName":"new.hire@acme.test"}`), 409, `"detail":"User already exists in the database."`)
	expect(t, c.do("POST", scimUsers, `{"userName":"fresh@acme.test","sentryOrgRole":"Billing"}`), 201, `"sentryOrgRole":"billing"`)

	owner := memberID(t, srv.Sandbox, "olivia.owner@acme.test")
	expect(t, c.do("PUT", scimUsers+"/"+owner, `{"sentryOrgRole":"member"}`), 200, `"sentryOrgRole":"owner"`)
	if v, _ := srv.Member("olivia.owner@acme.test"); !v.Flags["idp:provisioned"] || v.Flags["idp:role-restricted"] {
		t.Fatalf("owner flags %v", v.Flags)
	}
	maya := memberID(t, srv.Sandbox, "maya.manager@acme.test")
	expect(t, c.do("PUT", scimUsers+"/"+maya, `{"sentryOrgRole":""}`), 200, `"sentryOrgRole":"manager"`)
	if v, _ := srv.Member("maya.manager@acme.test"); v.Flags["idp:provisioned"] {
		t.Fatal("a no-op PUT marked the member idp:provisioned")
	}
	expect(t, c.do("PUT", scimUsers+"/"+maya, `{"sentryOrgRole":"Admin"}`), 200, `"sentryOrgRole":"admin"`)
	expect(t, c.do("PUT", scimUsers+"/"+maya, `{}`), 200, `"sentryOrgRole":"member"`)
	if v, _ := srv.Member("maya.manager@acme.test"); v.Flags["idp:role-restricted"] || !v.Flags["idp:provisioned"] {
		t.Fatalf("after blank PUT flags %v", v.Flags)
	}
}

// src/sentry/core/endpoints/scim/teams.py (patch): schemas and Operations
// are required; ops outside add/remove/replace are serializer errors;
// unmatched ops are skipped; an unsupported replace returns inside the
// transaction, committing the earlier ops; an unknown member raises and rolls
// everything back; Azure's remove takes the first value only.
func TestFidelitySCIMGroupPatch(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	var g struct{ ID string }
	c.do("POST", scimGroups, `{"displayName":"Fidelity Team"}`).json(t, &g)
	path := scimGroups + "/" + g.ID
	bob := memberID(t, srv.Sandbox, "bob.martin@acme.test")
	carlos := memberID(t, srv.Sandbox, "carlos.garcia@acme.test")
	onTeam := func(email string) bool {
		v, _ := srv.Member(email)
		_, ok := v.Teams["fidelity-team"]
		return ok
	}
	expect(t, c.do("PATCH", path, `{"Operations":[]}`), 400, `{\"schemas\":[\"This field is required.\"]}`)
	expect(t, c.do("PATCH", path, `{"schemas":[],"Operations":[{"op":"move"}]}`), 400, `\\\"move\\\" is not a valid choice`)
	// Skipped op, then an add, then an unsupported replace: the add sticks.
	r := c.do("PATCH", path, fmt.Sprintf(`{"schemas":[],"Operations":[{"op":"add","path":"displayName","value":"x"},{"op":"add","path":"members","value":[{"value":"%s"}]},{"op":"replace","path":"externalId","value":"x"}]}`, bob))
	expect(t, r, 400, `"detail":"Invalid Replace attr. Only displayName and members supported."`)
	if !onTeam("bob.martin@acme.test") {
		t.Fatal("the add before the unsupported replace was rolled back")
	}
	// An unknown member rolls back the add before it.
	r = c.do("PATCH", path, fmt.Sprintf(`{"schemas":[],"Operations":[{"op":"add","path":"members","value":[{"value":%s}]},{"op":"add","path":"members","value":[{"value":"99999999"}]}]}`, carlos))
	expect(t, r, 404, `"detail":"User not found."`)
	if onTeam("carlos.garcia@acme.test") {
		t.Fatal("the add before the failing one was committed")
	}
	// Azure's remove: only the first value counts.
	c.do("PATCH", path, fmt.Sprintf(`{"schemas":[],"Operations":[{"op":"add","path":"members","value":[{"value":"%s"}]}]}`, carlos))
	r = c.do("PATCH", path, fmt.Sprintf(`{"schemas":[],"Operations":[{"op":"remove","path":"members","value":[{"value":"%s"},{"value":"%s"}]}]}`, bob, carlos))
	expect(t, r, 204, "")
	if onTeam("bob.martin@acme.test") || !onTeam("carlos.garcia@acme.test") {
		t.Fatal("azure remove did not take exactly the first value")
	}
	expect(t, c.do("PATCH", path, `{"schemas":[],"Operations":[{"op":"remove","path":"members[bogus]"}]}`), 400, `"scimType":"invalidFilter"`)
	expect(t, c.do("PATCH", path, `{"schemas":[],"Operations":[{"op":"replace","value":{"displayName":"Payments"}}]}`), 400, `{"slug":["Another team is already using that slug"]}`)
	expect(t, c.do("PUT", path, `{}`), 405, `Method \"PUT\" not allowed.`)
}

// src/sentry/core/endpoints/scim/utils.py (SCIMQueryParamSerializer's
// excludedAttributes is a list; "members" must be one element of it).
func TestFidelitySCIMGroupsExcludedAttributes(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	var list struct{ Resources []map[string]any }
	c.get(scimQ(scimGroups, "excludedAttributes", "members")).json(t, &list)
	if _, has := list.Resources[0]["members"]; has {
		t.Fatal("members not excluded")
	}
	c.get(scimQ(scimGroups, "excludedAttributes", "members,displayName")).json(t, &list)
	if _, has := list.Resources[0]["members"]; !has {
		t.Fatal(`"members,displayName" is one element, not "members"`)
	}
}

// src/sentry/models/authprovider.py (enable_scim creates an internal
// integration with member:read/write/admin and team:write/admin) and
// src/sentry/core/endpoints/scim/utils.py (OrganizationSCIMPermission is an
// OrganizationPermission with a scope map, nothing token-specific): the SCIM
// token works on REST routes its scopes allow and nowhere else; a user token
// with the scopes works on the SCIM routes.
func TestFidelitySCIMTokenKinds(t *testing.T) {
	srv := NewServer(t, Options{SCIMToken: "scim-tok"})
	user := newClient(t, srv)
	scim := user.withToken("scim-tok")
	expect(t, scim.get(scimUsers), 200, "ListResponse")
	expect(t, scim.get(membersURL), 200, "")
	expect(t, scim.get("/api/0/organizations/acme/projects/"), 403, msgNoPermission)
	expect(t, user.get(scimUsers), 200, "ListResponse")
	expect(t, user.withToken("not-a-token").get(scimUsers), 401, "")
	if v := srv.SCIM(); v.Token != "scim-tok" || !v.Enabled {
		t.Fatalf("SCIM() = %+v", v)
	}
}

// src/sentry/core/endpoints/scim/teams.py: OrganizationSCIMTeamIndex.post is
// OrganizationTeamsEndpoint.post and OrganizationSCIMTeamDetails.delete is
// TeamDetailsEndpoint.delete (organization_teams.py, team_details.py), so a
// SCIM group's team.create and team.remove entries carry
// Team.get_audit_log_data (src/sentry/models/team.py), the removed team under
// its released slug with status pending deletion; a SCIM token is no user, so
// nobody joins the team it creates.
func TestFidelitySCIMGroupAuditEntries(t *testing.T) {
	srv := NewServer(t, Options{SCIMToken: "scim-tok", RateLimit: -1})
	scim := newClient(t, srv).withToken("scim-tok")
	created := scim.do("POST", "/api/0/organizations/acme/scim/v2/Groups",
		map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "SCIM Made", "members": []any{}})
	expect(t, created, 201, `"displayName":"SCIM Made"`)
	id := created.obj(t)["id"].(string)
	expect(t, scim.do("DELETE", "/api/0/organizations/acme/scim/v2/Groups/"+id, nil), 204, "")
	var create, remove *AuditEntry
	for _, e := range srv.AuditLog() {
		switch {
		case e.Event == "member.join-team" && e.TargetID == id:
			t.Fatalf("a SCIM-created team has a member joining it: %+v", e)
		case e.Event == "team.create" && e.Data["slug"] == "scim-made":
			create = &e
		case e.Event == "team.remove" && e.TargetID == id:
			remove = &e
		}
	}
	if create == nil || create.Data["name"] == nil || create.Data["status"] == nil {
		t.Fatalf("team.create without Team.get_audit_log_data: %+v", create)
	}
	if remove == nil || remove.Data["slug"] == "scim-made" || fmt.Sprint(remove.Data["status"]) != "1" {
		t.Fatalf("team.remove should carry the renamed, pending-deletion team: %+v", remove)
	}
	expect(t, scim.do("POST", "/api/0/organizations/acme/scim/v2/Groups",
		map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "SCIM Made", "members": []any{}}), 201, "")
}
