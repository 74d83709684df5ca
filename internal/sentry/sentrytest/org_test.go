package sentrytest

import (
	"net/http/httptest"
	"slices"
	"testing"
)

const orgURL = "/api/0/organizations/acme/"

// src/sentry/core/endpoints/organization_details.py (OrganizationDetailsEndpoint.get)
// with src/sentry/api/serializers/models/organization.py: the base fields and
// links for every caller the permission lets in; the detailed fields (access,
// role, orgRole, role lists) with org:read; teams and projects, by slug,
// unless detailed=0; features only with include_feature_flags.
func TestFidelityOrganizationDetails(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)

	r := c.get(orgURL)
	expect(t, r, 200, "")
	o := r.obj(t)
	if o["slug"] != "acme" || o["id"] == "" || o["name"] == "" || o["dateCreated"] == nil {
		t.Fatalf("base fields: %v", o)
	}
	if st, _ := o["status"].(map[string]any); st["id"] != "active" {
		t.Fatalf("status = %v", o["status"])
	}
	links, _ := o["links"].(map[string]any)
	if links["regionUrl"] != srv.URL || links["organizationUrl"] != srv.URL {
		t.Fatalf("links = %v, want the sandbox's own URL %s", links, srv.URL)
	}
	if o["orgRole"] != "manager" || o["role"] != "manager" {
		t.Fatalf("role/orgRole = %v/%v, want the service user's manager", o["role"], o["orgRole"])
	}
	access := strs(o["access"])
	for _, sc := range []string{"org:read", "org:write", "member:admin", "team:write", "project:write"} {
		if !slices.Contains(access, sc) {
			t.Fatalf("access %v lacks %s", access, sc)
		}
	}
	if slices.Contains(access, "org:admin") {
		t.Fatalf("access %v has org:admin: a manager's token cannot", access)
	}
	if _, has := o["features"]; has {
		t.Fatal("features without include_feature_flags: the endpoint's default is 0")
	}
	teams, _ := o["teams"].([]any)
	if len(teams) == 0 {
		t.Fatal("detailed (default) answer has no teams")
	}
	var slugs []string
	for _, tm := range teams {
		slugs = append(slugs, tm.(map[string]any)["slug"].(string))
	}
	if !slices.IsSorted(slugs) {
		t.Fatalf("teams not ordered by slug: %v", slugs)
	}
	if _, has := o["projects"]; !has {
		t.Fatal("detailed answer has no projects")
	}

	o = c.get(orgURL + "?detailed=0&include_feature_flags=1").obj(t)
	if _, has := o["teams"]; has {
		t.Fatal("detailed=0 still lists teams")
	}
	if _, has := o["access"]; !has {
		t.Fatal("detailed=0 drops the DetailedOrganizationSerializer fields too")
	}
	if len(strs(o["features"])) == 0 {
		t.Fatal("include_feature_flags=1 gives no features")
	}

	// Sentry's "test_as_no_org_read_user": org:write without org:read passes
	// the permission but gets the base serializer only.
	w := NewServer(t, Options{TokenScopes: []string{"org:write", "member:read"}})
	o = newClient(t, w).get(orgURL).obj(t)
	if _, has := o["access"]; has {
		t.Fatalf("no org:read, yet detailed: %v", o)
	}
	if l, _ := o["links"].(map[string]any); l["regionUrl"] != w.URL {
		t.Fatalf("base answer lacks links: %v", o)
	}
}

// src/sentry/api/bases/organization.py (OrganizationPermission: GET needs
// org:read, org:write or org:admin) and the endpoint's org lookup: 404 for an
// unknown org, 401 without credentials, 403 for the SCIM token (its scopes
// are member:* and team:*) and for a token without any org scope.
func TestFidelityOrganizationDetailsAccess(t *testing.T) {
	srv := NewServer(t, Options{SCIMToken: "scim-tok"})
	c := newClient(t, srv)
	expect(t, c.get("/api/0/organizations/nope/"), 404, msgNotFound)
	expect(t, c.withToken("").get(orgURL), 401, "")
	expect(t, c.withToken("scim-tok").get(orgURL), 403, msgNoPermission)
	expect(t, c.as("jane.doe@acme.test").get(orgURL), 200, `"orgRole":"member"`)

	narrow := NewServer(t, Options{TokenScopes: []string{"member:read", "team:read"}})
	expect(t, newClient(t, narrow).get(orgURL), 403, msgNoPermission)
}

// Options.RegionURL and OrganizationURL stand in for sentry.io's region and
// customer-domain links.
func TestOrganizationDetailsRegionOption(t *testing.T) {
	sb := New(Options{RegionURL: "https://us.sentry.io", OrganizationURL: "https://acme.sentry.io"})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", orgURL, nil)
	req.Header.Set("Authorization", "Bearer sandbox")
	sb.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var o map[string]any
	resp{status: rec.Code, body: rec.Body.Bytes()}.json(t, &o)
	l, _ := o["links"].(map[string]any)
	if l["regionUrl"] != "https://us.sentry.io" || l["organizationUrl"] != "https://acme.sentry.io" {
		t.Fatalf("links = %v", l)
	}
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
