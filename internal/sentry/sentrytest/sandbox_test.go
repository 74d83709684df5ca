package sentrytest

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const (
	membersURL = "/api/0/organizations/acme/members/"
	scimUsers  = "/api/0/organizations/acme/scim/v2/Users"
	scimGroups = "/api/0/organizations/acme/scim/v2/Groups"
)

func TestAuthErrors(t *testing.T) {
	srv := NewServer(t, Options{SCIMToken: "scim-secret"})
	c := newClient(t, srv)
	// an org auth token created by a member
	tok := c.as("jane.doe@acme.test").do("POST", "/api/0/organizations/acme/org-auth-tokens/", map[string]string{"name": "ci"})
	expect(t, tok, 201, `"token":"sntrys_`)
	orgTok := tok.obj(t)["token"].(string)

	cases := []struct {
		name   string
		c      *client
		method string
		path   string
		status int
		body   string
	}{
		{"no header", c.withToken(""), "GET", membersURL, 401, `{"detail":"Authentication credentials were not provided."}`},
		{"bad user token", c.withToken("nope"), "GET", membersURL, 401, `{"detail":"Invalid token"}`},
		{"bad org token", c.withToken("sntrys_nope"), "GET", membersURL, 401, `{"detail":"Invalid org token"}`},
		{"org token on members", c.withToken(orgTok), "GET", membersURL, 403, `{"detail":"You do not have permission to perform this action."}`},
		{"org token on member delete", c.withToken(orgTok), "DELETE", membersURL + memberID(t, srv.Sandbox, "jane.doe@acme.test") + "/", 403, `permission`},
		{"org token on SCIM", c.withToken(orgTok), "GET", scimUsers, 403, `permission`},
		{"unknown org", c, "GET", "/api/0/organizations/globex/members/", 404, `{"detail":"The requested resource does not exist"}`},
		{"org by id", c, "GET", "/api/0/organizations/4505281256090624/members/me/", 200, `"email":"jml-bot@acme.test"`},
		{"act-as unknown user", c.as("nobody@acme.test"), "GET", membersURL, 401, `Invalid token`},
		{"SCIM token on SCIM", c.withToken("scim-secret"), "GET", scimUsers, 200, `ListResponse`},
		{"unknown route", c, "GET", "/api/0/nope/", 404, `does not exist`},
		{"no trailing slash", c, "GET", "/api/0/organizations/acme/members", 404, ``},
		{"wrong method", c, "PATCH", membersURL, 405, `not allowed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.c.do(tc.method, tc.path, nil)
			expect(t, r, tc.status, tc.body)
		})
	}
}

func TestMembersMeAndGet(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	me := c.get(membersURL + "me/")
	expect(t, me, 200, "")
	m := me.obj(t)
	if m["email"] != "jml-bot@acme.test" || m["orgRole"] != "manager" || m["user"] == nil || m["pending"] != false {
		t.Fatalf("me = %v", m)
	}
	jane := c.get(membersURL + memberID(t, srv.Sandbox, "jane.doe@acme.test") + "/").obj(t)
	flags := jane["flags"].(map[string]any)
	if flags["idp:provisioned"] != false || jane["orgRole"] != "member" {
		t.Fatalf("jane = %v", jane)
	}
	if got := fmt.Sprint(jane["teams"]); got != "[mobile payments]" {
		t.Fatalf("jane teams = %s", got)
	}
	// payments admin is above member's minimum (contributor): stored; mobile contributor: null.
	if got := fmt.Sprint(jane["teamRoles"]); got != "[map[role:<nil> teamSlug:mobile] map[role:admin teamSlug:payments]]" {
		t.Fatalf("jane teamRoles = %s", got)
	}
	emails := jane["user"].(map[string]any)["emails"].([]any)
	if len(emails) != 3 || emails[2].(map[string]any)["is_verified"] != false {
		t.Fatalf("jane emails = %v", emails)
	}
	john, _ := srv.Member("JOHN.SMITH@acme.test")
	if !john.Flags["idp:provisioned"] || john.UserID == "" {
		t.Fatalf("john = %+v", john)
	}
	inv, ok := srv.Member("new.hire@acme.test")
	if !ok || !inv.Pending || inv.UserID != "" {
		t.Fatalf("new.hire = %+v", inv)
	}
	p := c.get(membersURL + inv.ID + "/").obj(t)
	if p["user"] != nil || p["pending"] != true || p["invite_link"] == nil {
		t.Fatalf("pending invite = %v", p)
	}
	expect(t, c.get(membersURL+"999/"), 404, `{"detail":"The requested resource does not exist"}`)
}

func TestDemoSeedShape(t *testing.T) {
	s := New(Options{})
	ms := s.Members()
	if len(ms) < 28 {
		t.Fatalf("only %d members", len(ms))
	}
	roles := map[string]int{}
	pending, idp := 0, 0
	for _, m := range ms {
		roles[m.OrgRole]++
		if m.Pending {
			pending++
		}
		if m.Flags["idp:provisioned"] {
			idp++
		}
	}
	if roles["owner"] != 2 || roles["manager"] < 2 || pending < 2 || idp < 3 {
		t.Fatalf("roles %v pending %d idp %d", roles, pending, idp)
	}
	bot, _ := s.Member("jml-bot@acme.test")
	if bot.OrgRole != "manager" {
		t.Fatalf("bot = %+v", bot)
	}
	if len(s.OrgAuthTokens()) < 2 {
		t.Fatal("no org auth tokens")
	}
	creates := 0
	for _, e := range s.AuditLog() {
		if e.Event == "org-auth-token.create" && e.ActorUserID != "" {
			creates++
		}
	}
	if creates != len(s.OrgAuthTokens()) {
		t.Fatalf("%d audit creates for %d tokens", creates, len(s.OrgAuthTokens()))
	}
}

func TestMemberQuery(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	jane, _ := srv.Member("jane.doe@acme.test")
	cases := []struct {
		query string
		want  []string // emails, in id order; nil = empty list
	}{
		{"email:jane.doe@acme.test", []string{"jane.doe@acme.test"}},
		{"email:JANE.DOE@ACME.TEST", []string{"jane.doe@acme.test"}},
		{"email:jane@janedoe.example", []string{"jane.doe@acme.test"}},
		{"email:jane.doe@acme.test email:john.smith@acme.test", nil}, // repeated keys AND like other keys; see below
		{"email:jane.doe@acme.test,john.smith@acme.test", []string{"jane.doe@acme.test", "john.smith@acme.test"}},
		{"email:nobody@acme.test", nil},
		{"id:" + jane.ID, []string{"jane.doe@acme.test"}},
		{"user.id:" + jane.UserID, []string{"jane.doe@acme.test"}},
		{"role:owner", []string{"olivia.owner@acme.test", "oscar.owner@acme.test"}},
		{"isInvited:true", []string{"new.hire@acme.test", "contractor.temp@acme.test", "sam.scim@acme.test"}},
		{"role:billing isInvited:false", []string{"rachel.green@acme.test"}},
		{"Jane Doe", []string{"jane.doe@acme.test"}},
		{"foo:bar", nil},
		{"email:jane.doe@acme.test foo:bar", nil},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := c.get(membersURL + "?query=" + urlQuery(tc.query))
			expect(t, r, 200, "")
			var got []string
			for _, m := range r.list(t) {
				got = append(got, m["email"].(string))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("query %q = %v, want %v", tc.query, got, tc.want)
			}
		})
	}
}

func urlQuery(s string) string {
	r := strings.NewReplacer(" ", "%20", ":", "%3A", "@", "%40", ",", "%2C", "+", "%2B")
	return r.Replace(s)
}

var linkRe = regexp.MustCompile(`^<([^>]*)>; rel="previous"; results="(true|false)"; cursor="([^"]*)", <([^>]*)>; rel="next"; results="(true|false)"; cursor="([^"]*)"$`)

func bigSeed(n int) *Seed {
	s := DemoSeed()
	s.Generate = &SeedGenerate{Members: n, Teams: 20, TeamsPerMember: 2, PendingEvery: 10, IdPEvery: 7}
	return s
}

func TestPaginationWalk(t *testing.T) {
	srv := NewServer(t, Options{Seed: bigSeed(219), RateLimit: -1})
	c := newClient(t, srv)
	total := len(srv.Members())
	if total != 250 {
		t.Fatalf("seed has %d members, want 250", total)
	}
	first := c.get(membersURL)
	expect(t, first, 200, "")
	want := `<` + srv.URL + membersURL + `?&cursor=100:-1:1>; rel="previous"; results="false"; cursor="100:-1:1", <` +
		srv.URL + membersURL + `?&cursor=100:1:0>; rel="next"; results="true"; cursor="100:1:0"`
	if got := first.header.Get("Link"); got != want {
		t.Fatalf("Link =\n%s\nwant\n%s", got, want)
	}
	if first.header.Get("Retry-After") != "" {
		t.Fatal("unexpected Retry-After")
	}

	seen := map[string]bool{}
	var ids []int
	url := srv.URL + membersURL + "?per_page=100"
	pages := 0
	for {
		r := c.get(url)
		expect(t, r, 200, "")
		pages++
		for _, m := range r.list(t) {
			id := m["id"].(string)
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
			n, _ := strconv.Atoi(id)
			ids = append(ids, n)
		}
		mm := linkRe.FindStringSubmatch(r.header.Get("Link"))
		if mm == nil {
			t.Fatalf("bad Link %q", r.header.Get("Link"))
		}
		if !strings.Contains(mm[4], "per_page=100&cursor=") {
			t.Fatalf("next URL lost the query: %s", mm[4])
		}
		if pages == 2 && (mm[2] != "true" || mm[3] != "100:0:1") {
			t.Fatalf("page 2 previous = %s %s", mm[2], mm[3])
		}
		if mm[5] == "false" {
			break
		}
		url = mm[4]
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if pages != 3 || len(seen) != 250 || !sort.IntsAreSorted(ids) {
		t.Fatalf("pages %d, members %d, sorted %v", pages, len(seen), sort.IntsAreSorted(ids))
	}

	// per_page smaller than the default: the cursor carries the page size.
	r := c.get(membersURL + "?per_page=30&cursor=30:8:0")
	if l := r.list(t); len(l) != 10 {
		t.Fatalf("last 30-page has %d", len(l))
	}
	expect(t, c.get(membersURL+"?per_page=101"), 400, `{"detail":"Invalid per_page value. Cannot exceed 100."}`)
	expect(t, c.get(membersURL+"?cursor=garbage"), 400, `{"detail":"Invalid cursor parameter."}`)
	expect(t, c.get(membersURL+"?cursor=100:-1:1"), 400, `negative`)
}

func TestDeleteMember(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	id := func(e string) string { return memberID(t, srv.Sandbox, e) }
	cases := []struct {
		name   string
		c      *client
		email  string
		status int
		body   string
		gone   bool
	}{
		{"idp provisioned", c, "john.smith@acme.test", 403, `{"detail":"This user is managed through your organization's identity provider."}`, false},
		{"owner by manager", c, "olivia.owner@acme.test", 400, `{"detail":"You cannot remove a member who has more access than you."}`, false},
		{"manager by member", c.as("jane.doe@acme.test"), "maya.manager@acme.test", 400, `member:admin`, false},
		{"regular member", c, "jane.doe@acme.test", 204, ``, true},
		{"pending invite", c, "new.hire@acme.test", 204, ``, true},
		{"self removal as member", c.as("george.miller@acme.test"), "george.miller@acme.test", 204, ``, true},
		{"owner by owner", c.as("olivia.owner@acme.test"), "oscar.owner@acme.test", 204, ``, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mid := id(tc.email)
			r := tc.c.do("DELETE", membersURL+mid+"/", nil)
			expect(t, r, tc.status, tc.body)
			if tc.status == 204 && len(r.body) != 0 {
				t.Fatalf("204 with body %q", r.body)
			}
			_, still := srv.Member(tc.email)
			if still == tc.gone {
				t.Fatalf("member present = %v after %d", still, r.status)
			}
			if tc.gone {
				expect(t, c.get(membersURL+mid+"/"), 404, "")
				expect(t, c.do("DELETE", membersURL+mid+"/", nil), 404, "")
			}
		})
	}
	st := srv.Stats()
	if st.Mutations["member.remove"]["jane.doe@acme.test"] != 1 || st.Mutations["member.remove"]["john.smith@acme.test"] != 0 {
		t.Fatalf("mutations = %v", st.Mutations)
	}
	// jane's removal is in the audit log, actor = the service user.
	bot, _ := srv.Member("jml-bot@acme.test")
	r := c.get("/api/0/organizations/acme/audit-logs/?event=member.remove&actor=" + bot.UserID)
	expect(t, r, 200, `"note":"removed member jane.doe@acme.test"`)
}

func TestLastOwnerGuard(t *testing.T) {
	seed := &Seed{
		Org:   SeedOrg{Slug: "solo", SAML: true, SCIM: true},
		Teams: []SeedTeam{{Slug: "core"}},
		Members: []SeedMember{
			{Email: "only.owner@solo.test", OrgRole: "owner"},
			{Email: "jml-bot@acme.test", OrgRole: "member"},
		},
	}
	srv := NewServer(t, Options{Seed: seed})
	c := newClient(t, srv)
	owner := memberID(t, srv.Sandbox, "only.owner@solo.test")
	base := "/api/0/organizations/solo/members/"
	expect(t, c.as("only.owner@solo.test").do("DELETE", base+owner+"/", nil), 403,
		`{"detail":"You cannot remove the only remaining owner or manager of the organization."}`)
	expect(t, c.as("only.owner@solo.test").do("DELETE", base+"me/", nil), 403, `only remaining owner`)
	expect(t, c.as("only.owner@solo.test").do("PATCH", "/api/0/organizations/solo/scim/v2/Users/"+owner,
		`{"Operations":[{"op":"replace","path":"active","value":false}]}`), 403,
		`{"detail":"You cannot remove the only remaining owner of the organization."}`)
	if _, ok := srv.Member("only.owner@solo.test"); !ok {
		t.Fatal("owner removed")
	}
}

func TestSCIMUsers(t *testing.T) {
	srv := NewServer(t, Options{SCIMToken: "scim-secret"})
	c := newClient(t, srv)
	scim := c.withToken("scim-secret")

	r := c.get(scimUsers)
	expect(t, r, 200, `"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"]`)
	var list struct {
		TotalResults, StartIndex, ItemsPerPage int
		Resources                              []map[string]any
	}
	r.json(t, &list)
	if list.TotalResults != len(srv.Members()) || list.ItemsPerPage != len(list.Resources) || list.StartIndex != 1 {
		t.Fatalf("list = %d/%d/%d", list.TotalResults, list.ItemsPerPage, list.StartIndex)
	}
	// Sentry's order_by("email", "id"): pending invites (the only rows with
	// their own email) first by email, then members by id (fidelity_scim_test.go).
	var emails []string
	for _, u := range list.Resources {
		emails = append(emails, u["userName"].(string))
	}
	if emails[0] != "contractor.temp@acme.test" || !strings.Contains(strings.Join(emails, " "), "new.hire@acme.test") {
		t.Fatalf("SCIM users not in Sentry's order or missing invites: %v", emails)
	}
	r = c.get(scimUsers + "?startIndex=10&count=10")
	r.json(t, &list)
	if list.StartIndex != 10 || list.ItemsPerPage != 10 || list.Resources[0]["userName"] != emails[9] {
		t.Fatalf("paged list = %+v", list)
	}

	jane := memberID(t, srv.Sandbox, "jane.doe@acme.test")
	filterCases := []struct {
		filter string
		status int
		total  int
	}{
		{`userName eq "jane.doe@acme.test"`, 200, 1},
		{`userName eq "JANE.DOE@acme.test"`, 200, 1},
		{`userName eq 'jane.doe@acme.test'`, 200, 1},
		{`userName eq "nobody@acme.test"`, 200, 0},
		{`userName eq "a@b.c" and userName eq "d@e.f"`, 400, 0},
		{`userName eq "a@b.c",userName eq "d@e.f"`, 400, 0},
		{`userName co "jane"`, 400, 0},
		{`emails eq "jane.doe@acme.test"`, 400, 0},
	}
	for _, fc := range filterCases {
		r := c.get(scimUsers + "?filter=" + strings.NewReplacer(" ", "%20", `"`, "%22", "@", "%40", ",", "%2C").Replace(fc.filter))
		if r.status != fc.status {
			t.Fatalf("filter %s: status %d body %s", fc.filter, r.status, r.body)
		}
		if fc.status == 400 {
			expect(t, r, 400, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"scimType":"invalidFilter"}`)
			continue
		}
		r.json(t, &list)
		if list.TotalResults != fc.total {
			t.Fatalf("filter %s: total %d", fc.filter, list.TotalResults)
		}
	}

	u := c.get(scimUsers + "/" + jane).obj(t)
	if u["userName"] != "jane.doe@acme.test" || u["active"] != true || u["sentryOrgRole"] != "member" || u["id"] != jane {
		t.Fatalf("user = %v", u)
	}
	expect(t, c.get(scimUsers+"/424242"), 404, `"detail":"The requested resource does not exist"`)
	expect(t, c.get(scimUsers+"/abc"), 404, `urn:ietf:params:scim:api:messages:2.0:Error`)

	patchCases := []struct {
		name   string
		email  string
		body   string
		status int
		msg    string
	}{
		{"okta value object", "jane.doe@acme.test", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`, 204, ""},
		{"entra False string", "john.smith@acme.test", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`, 204, ""},
		{"plain path", "alice.nguyen@acme.test", `{"Operations":[{"op":"replace","path":"active","value":false}]}`, 204, ""},
		{"active true", "bob.martin@acme.test", `{"Operations":[{"op":"replace","path":"active","value":true}]}`, 400, `"detail":"Invalid Patch Operation."`},
		{"add op", "bob.martin@acme.test", `{"Operations":[{"op":"add","path":"active","value":false}]}`, 400, `is not a valid choice`},
		{"other attr", "bob.martin@acme.test", `{"Operations":[{"op":"replace","path":"name.givenName","value":"B"}]}`, 400, `value must be a boolean or object`},
		{"pending invite", "sam.scim@acme.test", `{"Operations":[{"op":"replace","path":"active","value":false}]}`, 204, ""},
	}
	for _, pc := range patchCases {
		t.Run(pc.name, func(t *testing.T) {
			id := memberID(t, srv.Sandbox, pc.email)
			r := scim.do("PATCH", scimUsers+"/"+id, pc.body)
			expect(t, r, pc.status, pc.msg)
			_, still := srv.Member(pc.email)
			if still != (pc.status != 204) {
				t.Fatalf("member present = %v", still)
			}
			if pc.status == 204 {
				expect(t, c.get(membersURL+id+"/"), 404, "")
			}
		})
	}
	// DELETE through SCIM works for idp-provisioned members the REST API refuses.
	ivan := memberID(t, srv.Sandbox, "ivan.petrov@acme.test")
	expect(t, c.do("DELETE", membersURL+ivan+"/", nil), 403, "identity provider")
	expect(t, c.do("DELETE", scimUsers+"/"+ivan, nil), 204, "")
	expect(t, c.do("DELETE", scimUsers+"/"+ivan, nil), 404, "")

	st := srv.Stats()
	if st.Mutations["member.remove"]["john.smith@acme.test"] != 1 || st.Mutations["member.remove"]["ivan.petrov@acme.test"] != 1 {
		t.Fatalf("mutations %v", st.Mutations["member.remove"])
	}
	// SCIM removals are attributed to the integration when the SCIM token was used.
	found := false
	for _, e := range srv.AuditLog() {
		if e.Event == "member.remove" && strings.HasPrefix(e.ActorName, "SCIM Internal Integration (") {
			found = true
		}
	}
	if !found {
		t.Fatal("no SCIM-attributed member.remove")
	}
}

func TestSCIMDisabled(t *testing.T) {
	seed := DemoSeed()
	seed.Org.SCIM = false
	srv := NewServer(t, Options{Seed: seed})
	c := newClient(t, srv)
	expect(t, c.get(scimUsers), 403, `{"detail":"You do not have permission to perform this action."}`)
	expect(t, c.do("DELETE", scimUsers+"/"+memberID(t, srv.Sandbox, "jane.doe@acme.test"), nil), 403, "")
}

func TestSCIMCreateAndPut(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	r := c.do("POST", scimUsers, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"scim.person@acme.test","sentryOrgRole":"Admin","active":true}`)
	expect(t, r, 201, `"sentryOrgRole":"admin"`)
	v, _ := srv.Member("scim.person@acme.test")
	if !v.Pending || !v.Flags["idp:provisioned"] || !v.Flags["idp:role-restricted"] {
		t.Fatalf("created = %+v", v)
	}
	expect(t, c.do("POST", scimUsers, `{"userName":"jane.doe@acme.test"}`), 409, `User already exists in the database.`)
	expect(t, c.do("POST", scimUsers, `{"userName":"x@acme.test","sentryOrgRole":"owner"}`), 400, `Invalid organization role.`)
	jane := memberID(t, srv.Sandbox, "jane.doe@acme.test")
	expect(t, c.do("PUT", scimUsers+"/"+jane, `{"sentryOrgRole":"manager"}`), 200, `"sentryOrgRole":"manager"`)
	v, _ = srv.Member("jane.doe@acme.test")
	if v.OrgRole != "manager" || !v.Flags["idp:role-restricted"] || !v.Flags["idp:provisioned"] {
		t.Fatalf("after PUT = %+v", v)
	}
	// team roles at or below the new minimum (admin for managers) are stored as null.
	if v.Teams["payments"] != "" {
		t.Fatalf("payments role = %q", v.Teams["payments"])
	}
}

func TestRateLimit(t *testing.T) {
	clk := newClock()
	srv := NewServer(t, Options{Now: clk.Now})
	c := newClient(t, srv)
	for i := 1; i <= 40; i++ {
		r := c.get(membersURL + "me/")
		expect(t, r, 200, "")
		h := r.header
		if h.Get("X-Sentry-Rate-Limit-Limit") != "40" || h.Get("X-Sentry-Rate-Limit-Remaining") != strconv.Itoa(40-i) ||
			h.Get("X-Sentry-Rate-Limit-Reset") != strconv.FormatInt(clk.Now().Unix()+1, 10) ||
			h.Get("X-Sentry-Rate-Limit-ConcurrentLimit") != "25" || h.Get("X-Sentry-Rate-Limit-ConcurrentRemaining") != "24" {
			t.Fatalf("request %d headers %v", i, h)
		}
	}
	r := c.get(membersURL + "me/")
	expect(t, r, 429, "")
	// src/sentry/middleware/ratelimit.py: {"detail": ...} in a plain HttpResponse (text/html).
	if string(r.body) != `{"detail":"You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"}` ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("429 body %s", r.body)
	}
	if r.header.Get("Retry-After") != "" || r.header.Get("X-Sentry-Rate-Limit-Remaining") != "0" {
		t.Fatalf("429 headers %v", r.header)
	}
	// another method or pattern has its own window; so has another caller.
	expect(t, c.get(membersURL), 200, "")
	expect(t, c.as("olivia.owner@acme.test").get(membersURL+"me/"), 200, "")
	// the next window starts fresh.
	clk.Add(1e9)
	expect(t, c.get(membersURL+"me/"), 200, "")
	if st := srv.Stats(); st.RateLimited != 1 {
		t.Fatalf("rate limited = %d", st.RateLimited)
	}
	// disabled: no headers at all.
	off := NewServer(t, Options{RateLimit: -1})
	r = newClient(t, off).get(membersURL + "me/")
	for k := range r.header {
		if strings.HasPrefix(k, "X-Sentry-Rate-Limit") {
			t.Fatalf("header %s with rate limiting disabled", k)
		}
	}
}

func TestStatsEndpoint(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	c.get(membersURL)
	c.get(membersURL)
	c.get(membersURL + "999/")
	c.do("DELETE", membersURL+memberID(t, srv.Sandbox, "jane.doe@acme.test")+"/", nil)
	var st Stats
	c.get("/_sandbox/stats").json(t, &st)
	want := map[string]int{
		"GET " + PatternMembers + " 200":   2,
		"GET " + PatternMember + " 404":    1,
		"DELETE " + PatternMember + " 204": 1,
	}
	got := map[string]int{}
	for _, rc := range st.Requests {
		got[fmt.Sprintf("%s %s %d", rc.Method, rc.Pattern, rc.Status)] = rc.Count
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || st.TotalRequests != 4 {
		t.Fatalf("stats requests = %v total %d", got, st.TotalRequests)
	}
	if st.Mutations["member.remove"]["jane.doe@acme.test"] != 1 || st.ServingSeconds <= 0 {
		t.Fatalf("stats = %+v", st)
	}
	var log []LoggedRequest
	c.get("/_sandbox/requests").json(t, &log)
	if len(log) != 4 || log[3].Method != "DELETE" || log[3].Status != 204 || log[3].Caller != "jml-bot@acme.test" ||
		log[2].Path != membersURL+"999/" || log[0].Pattern != PatternMembers {
		t.Fatalf("request log = %+v", log)
	}
	expect(t, c.do("POST", "/_sandbox/stats/reset", nil), 204, "")
	if len(srv.RequestLog()) != 0 {
		t.Fatal("request log not reset")
	}
	st = Stats{}
	c.get("/_sandbox/stats").json(t, &st)
	if st.TotalRequests != 0 || len(st.Requests) != 0 || len(st.Mutations) != 0 {
		t.Fatalf("after reset %+v", st)
	}
}

func TestActAsAndOrgTokens(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	jane, _ := srv.Member("jane.doe@acme.test")
	r := c.as("jane.doe@acme.test").do("POST", "/api/0/organizations/acme/org-auth-tokens/", map[string]string{"name": "jane-ci"})
	expect(t, r, 201, `"scopes":["org:ci"]`)
	tok := r.obj(t)
	// The created token works for org:ci only.
	expect(t, c.withToken(tok["token"].(string)).get(membersURL), 403, "")
	// list (no plaintext) and audit log naming jane.
	l := c.get("/api/0/organizations/acme/org-auth-tokens/")
	expect(t, l, 200, `"name":"jane-ci"`)
	if strings.Contains(string(l.body), tok["token"].(string)) {
		t.Fatal("token plaintext listed")
	}
	a := c.get("/api/0/organizations/acme/audit-logs/?event=org-auth-token.create&actor=" + jane.UserID).obj(t)
	rows := a["rows"].([]any)
	if len(rows) != 3 { // two seeded + the new one
		t.Fatalf("jane's token creations = %d", len(rows))
	}
	newest := rows[0].(map[string]any)
	if newest["note"] != "added org auth token jane-ci" || newest["actor"].(map[string]any)["email"] != "jane.doe@acme.test" {
		t.Fatalf("newest row = %v", newest)
	}
	if _, ok := newest["targetObject"].(float64); !ok {
		t.Fatalf("targetObject not a number: %v", newest["targetObject"])
	}
	// jane (member) may not read the audit log or revoke tokens.
	expect(t, c.as("jane.doe@acme.test").get("/api/0/organizations/acme/audit-logs/"), 403, "")
	expect(t, c.as("jane.doe@acme.test").do("DELETE", "/api/0/organizations/acme/org-auth-tokens/"+tok["id"].(string)+"/", nil), 403, "")
	expect(t, c.do("DELETE", "/api/0/organizations/acme/org-auth-tokens/"+tok["id"].(string)+"/", nil), 204, "")
	expect(t, c.do("DELETE", "/api/0/organizations/acme/org-auth-tokens/"+tok["id"].(string)+"/", nil), 404, "")
	expect(t, c.withToken(tok["token"].(string)).get(membersURL), 401, "Invalid org token")
	if srv.Stats().Mutations["org-auth-token.remove"]["jane.doe@acme.test"] != 1 {
		t.Fatal("token removal not counted")
	}
	// A removed user's token keeps authenticating but loses the organization.
	expect(t, c.do("DELETE", membersURL+jane.ID+"/", nil), 204, "")
	expect(t, c.as("jane.doe@acme.test").get(membersURL), 403, "")
}

func TestInviteAndAccept(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	r := c.do("POST", membersURL, map[string]any{"email": "fresh.face@acme.test", "orgRole": "member",
		"teamRoles": []map[string]any{{"teamSlug": "payments", "role": "admin"}, {"teamSlug": "data", "role": nil}}})
	expect(t, r, 201, `"pending":true`)
	m := r.obj(t)
	if m["user"] != nil || m["email"] != "fresh.face@acme.test" || m["inviterName"] != "Jml Bot" {
		t.Fatalf("invite = %v", m)
	}
	expect(t, c.do("POST", membersURL, map[string]any{"email": "fresh.face@acme.test"}), 400, `has already been invited`)
	expect(t, c.do("POST", membersURL, map[string]any{"email": "jane.doe@acme.test"}), 400, `{"email":["The user jane.doe@acme.test is already a member"]}`)
	expect(t, c.do("POST", membersURL, map[string]any{"email": "boss@acme.test", "orgRole": "owner"}), 400, `orgRole`)
	expect(t, c.do("POST", membersURL, map[string]any{"email": "x@acme.test", "teamRoles": []map[string]any{{"teamSlug": "nope"}}}), 400, `Invalid team`)

	id := m["id"].(string)
	expect(t, c.do("POST", "/_sandbox/invites/"+id+"/accept", nil), 200, `"Pending":false`)
	expect(t, c.do("POST", "/_sandbox/invites/"+id+"/accept", nil), 400, "")
	d := c.get(membersURL + id + "/").obj(t)
	if d["pending"] != false || d["user"] == nil || fmt.Sprint(d["teams"]) != "[data payments]" {
		t.Fatalf("accepted = %v", d)
	}
	if srv.Stats().Mutations["member.invite"]["fresh.face@acme.test"] != 1 {
		t.Fatal("invite not counted")
	}
}

func TestInviteQuota(t *testing.T) {
	clk := newClock()
	srv := NewServer(t, Options{Now: clk.Now, RateLimit: -1})
	c := newClient(t, srv)
	for i := 0; i < 100; i++ {
		expect(t, c.do("POST", membersURL, map[string]any{"email": fmt.Sprintf("hire%03d@acme.test", i)}), 201, "")
	}
	expect(t, c.do("POST", membersURL, map[string]any{"email": "hire100@acme.test"}), 429,
		`{"detail":"You are being rate limited for too many invitations."}`)
	if _, ok := srv.Member("hire100@acme.test"); ok {
		t.Fatal("rate-limited invite was created")
	}
	clk.Add(24 * 3600e9)
	expect(t, c.do("POST", membersURL, map[string]any{"email": "hire100@acme.test"}), 201, "")
	// 10 per email per day (reinvites count; only a PUT re-sends).
	hire := memberID(t, srv.Sandbox, "hire100@acme.test")
	for i := 0; i < 9; i++ {
		expect(t, c.do("PUT", membersURL+hire+"/", map[string]any{"reinvite": true}), 200, "")
	}
	expect(t, c.do("PUT", membersURL+hire+"/", map[string]any{"reinvite": true}), 429, "too many invitations")

	off := NewServer(t, Options{DisableInviteQuota: true, RateLimit: -1})
	oc := newClient(t, off)
	for i := 0; i < 101; i++ {
		expect(t, oc.do("POST", membersURL, map[string]any{"email": fmt.Sprintf("hire%03d@acme.test", i)}), 201, "")
	}
}

func TestMemberPut(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	jane := memberID(t, srv.Sandbox, "jane.doe@acme.test")
	// replace the whole team set: payments kept as contributor (null), platform added, mobile dropped.
	r := c.do("PUT", membersURL+jane+"/", map[string]any{"orgRole": "member",
		"teamRoles": []map[string]any{{"teamSlug": "payments", "role": "contributor"}, {"teamSlug": "platform", "role": "admin"}}})
	expect(t, r, 200, "")
	v, _ := srv.Member("jane.doe@acme.test")
	// Sentry stores the team roles as given (contributor stays contributor).
	if fmt.Sprint(v.Teams) != "map[payments:contributor platform:admin]" {
		t.Fatalf("teams = %v", v.Teams)
	}
	// a PUT without teamRoles clears the team set (Sentry's replace step always runs).
	expect(t, c.do("PUT", membersURL+jane+"/", map[string]any{"orgRole": "manager"}), 200, `"orgRole":"manager"`)
	v, _ = srv.Member("jane.doe@acme.test")
	if len(v.Teams) != 0 || v.OrgRole != "manager" {
		t.Fatalf("after role-only PUT: %+v", v)
	}
	st := srv.Stats()
	if st.Mutations["member.edit"]["jane.doe@acme.test"] != 1 || st.Mutations["member.leave-team"]["jane.doe@acme.test"] != 3 {
		t.Fatalf("mutations = %v", st.Mutations)
	}
	olivia := memberID(t, srv.Sandbox, "olivia.owner@acme.test")
	expect(t, c.do("PUT", membersURL+olivia+"/", map[string]any{"orgRole": "member"}), 403, `{"role":"You do not have permission to assign a role to the given user."}`)
	// the request serializer refuses a role above the caller's before the view's own 403s.
	expect(t, c.do("PUT", membersURL+jane+"/", map[string]any{"orgRole": "owner"}), 400, `{"orgRole":["You do not have permission to set that org-level role"]}`)
	expect(t, c.do("PUT", membersURL+"me/", map[string]any{"orgRole": "member"}), 400, `You cannot make changes to your own role.`)
	expect(t, c.do("PUT", membersURL+jane+"/", map[string]any{"orgRole": "admin"}), 400, `deprecated`)
	ivan := memberID(t, srv.Sandbox, "ivan.petrov@acme.test")
	// Sentry does not enforce the idp:role-restricted lock on PUT (see fidelity_rest_test.go).
	expect(t, c.do("PUT", membersURL+ivan+"/", map[string]any{"orgRole": "manager"}), 200, `"orgRole":"manager"`)
}

func TestMemberTeams(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	george := memberID(t, srv.Sandbox, "george.miller@acme.test")
	mt := func(id, team string) string { return membersURL + id + "/teams/" + team + "/" }
	expect(t, c.do("POST", mt(george, "platform"), nil), 201, `"slug":"platform"`)
	expect(t, c.do("POST", mt(george, "platform"), nil), 204, "")
	expect(t, c.do("POST", mt(george, "okta-engineering"), nil), 403, `{"detail":"This team is managed through your organization's identity provider."}`)
	expect(t, c.do("POST", mt(george, "nope"), nil), 404, "")
	// a plain member adding someone else creates an access request: 202, no membership.
	hannah := memberID(t, srv.Sandbox, "hannah.schmidt@acme.test")
	expect(t, c.as("julia.rossi@acme.test").do("POST", mt(hannah, "security"), nil), 202, "")
	if v, _ := srv.Member("hannah.schmidt@acme.test"); hasKey(v.Teams, "security") || len(v.Teams) != 1 {
		t.Fatalf("202 created a membership: %v", v.Teams)
	}
	// without Open Membership even joining yourself is only a request…
	expect(t, c.as("hannah.schmidt@acme.test").do("POST", mt(hannah, "data"), nil), 202, "")
	// …but a team admin (jane, admin of payments) can add people to that team.
	expect(t, c.as("jane.doe@acme.test").do("POST", mt(hannah, "payments"), nil), 201, "")
	expect(t, c.as("jane.doe@acme.test").do("POST", mt(hannah, "platform"), nil), 202, "")
	r := c.do("PUT", mt(george, "platform"), map[string]string{"teamRole": "admin"})
	expect(t, r, 200, `{"isActive":true,"teamRole":"admin"}`)
	expect(t, c.do("PUT", mt(george, "platform"), map[string]string{"teamRole": "contributor"}), 200, `{"isActive":true,"teamRole":null}`)
	expect(t, c.do("PUT", mt(george, "mobile"), map[string]string{"teamRole": "admin"}), 404, "")
	// a manager's team role is always stored as null (admin is the manager minimum).
	maya := memberID(t, srv.Sandbox, "maya.manager@acme.test")
	expect(t, c.do("PUT", mt(maya, "payments"), map[string]string{"teamRole": "admin"}), 200, `"teamRole":null`)
	expect(t, c.do("DELETE", mt(george, "platform"), nil), 200, `"slug":"platform"`)
	john := memberID(t, srv.Sandbox, "john.smith@acme.test")
	expect(t, c.do("DELETE", mt(john, "okta-engineering"), nil), 403, "identity provider")
	v, _ := srv.Member("george.miller@acme.test")
	if _, on := v.Teams["platform"]; on {
		t.Fatal("still on platform")
	}
	st := srv.Stats()
	if st.Mutations["member.join-team"]["george.miller@acme.test"] != 1 || st.Mutations["member.leave-team"]["george.miller@acme.test"] != 1 {
		t.Fatalf("mutations %v", st.Mutations)
	}
}

func TestOpenMembership(t *testing.T) {
	seed := DemoSeed()
	seed.Org.OpenMembership = true
	srv := NewServer(t, Options{Seed: seed})
	c := newClient(t, srv)
	hannah := memberID(t, srv.Sandbox, "hannah.schmidt@acme.test")
	expect(t, c.as("julia.rossi@acme.test").do("POST", membersURL+hannah+"/teams/security/", nil), 201, `"slug":"security"`)
	if v, _ := srv.Member("hannah.schmidt@acme.test"); !hasKey(v.Teams, "security") {
		t.Fatal("not added")
	}
	// IdP-provisioned teams stay closed.
	expect(t, c.as("julia.rossi@acme.test").do("POST", membersURL+hannah+"/teams/okta-engineering/", nil), 403, "identity provider")
}

func TestTeams(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	teams := c.get("/api/0/organizations/acme/teams/")
	expect(t, teams, 200, `"idp:provisioned":true`)
	if len(teams.list(t)) != 7 || teams.header.Get("Link") == "" {
		t.Fatalf("teams = %d", len(teams.list(t)))
	}
	expect(t, c.do("POST", "/api/0/organizations/acme/teams/", map[string]string{"slug": "growth"}), 201, `"slug":"growth"`)
	expect(t, c.do("POST", "/api/0/organizations/acme/teams/", map[string]string{"slug": "growth"}), 409, `A team with this slug already exists.`)
	expect(t, c.do("POST", "/api/0/organizations/acme/teams/", map[string]string{"slug": "12345"}), 400, `slug`)
	expect(t, c.get("/api/0/teams/acme/growth/"), 200, `"isMember":true`)
	expect(t, c.get("/api/0/teams/acme/nope/"), 404, "")
	// team members: pending invites listed (team_members.py, see
	// TestFidelityTeamMembersOrder), teamRole as stored.
	tm := c.get("/api/0/teams/acme/payments/members/")
	expect(t, tm, 200, `"teamSlug":"payments"`)
	for _, m := range tm.list(t) {
		if m["email"] == "jane.doe@acme.test" && m["teamRole"] != "admin" {
			t.Fatalf("jane teamRole %v", m["teamRole"])
		}
	}
	expect(t, c.do("DELETE", "/api/0/teams/acme/okta-engineering/", nil), 403, "permission") // team:admin not in the token
	expect(t, c.as("olivia.owner@acme.test").do("DELETE", "/api/0/teams/acme/okta-engineering/", nil), 403, "identity provider")
	expect(t, c.as("olivia.owner@acme.test").do("DELETE", "/api/0/teams/acme/growth/", nil), 204, "")
	expect(t, c.get("/api/0/teams/acme/growth/"), 404, "")
	expect(t, c.do("POST", "/api/0/organizations/acme/teams/", map[string]string{"slug": "growth"}), 201, "")
	// projects and project↔team links
	expect(t, c.get("/api/0/organizations/acme/projects/"), 200, `"slug":"checkout-api"`)
	expect(t, c.do("POST", "/api/0/projects/acme/checkout-api/teams/growth/", nil), 201, `"slug":"growth"`)
	tp := c.get("/api/0/teams/acme/growth/projects/")
	if l := tp.list(t); len(l) != 1 || l[0]["slug"] != "checkout-api" {
		t.Fatalf("growth projects = %s", tp.body)
	}
	expect(t, c.do("DELETE", "/api/0/projects/acme/checkout-api/teams/growth/", nil), 200, "")
	if l := c.get("/api/0/teams/acme/growth/projects/").list(t); len(l) != 0 {
		t.Fatal("link not removed")
	}
}

func TestSCIMGroups(t *testing.T) {
	srv := NewServer(t, Options{})
	c := newClient(t, srv)
	r := c.get(scimGroups + "?filter=" + urlQuery(`displayName eq "Okta Engineering"`))
	expect(t, r, 200, `"displayName":"Okta Engineering"`)
	expect(t, c.get(scimGroups+"?excludedAttributes=members"), 200, "")
	if strings.Contains(string(c.get(scimGroups+"?excludedAttributes=members").body), `"members"`) {
		t.Fatal("members not excluded")
	}
	g := c.do("POST", scimGroups, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Site Reliability"}`)
	expect(t, g, 201, `"displayName":"Site Reliability"`)
	expect(t, c.do("POST", scimGroups, `{"displayName":"site reliability"}`), 409, `A team with this slug already exists.`)
	gid := g.obj(t)["id"].(string)
	jane := memberID(t, srv.Sandbox, "jane.doe@acme.test")
	expect(t, c.do("PATCH", scimGroups+"/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"`+jane+`"}]}]}`), 204, "")
	if v, _ := srv.Member("jane.doe@acme.test"); !hasKey(v.Teams, "site-reliability") {
		t.Fatalf("jane teams %v", v.Teams)
	}
	expect(t, c.do("PATCH", scimGroups+"/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"`+jane+`\"]"}]}`), 204, "")
	if v, _ := srv.Member("jane.doe@acme.test"); hasKey(v.Teams, "site-reliability") {
		t.Fatal("still member")
	}
	expect(t, c.do("PATCH", scimGroups+"/"+gid, `{"schemas":[],"Operations":[{"op":"add","path":"members","value":[{"value":"`+jane+`"}]},{"op":"add","path":"members","value":[{"value":"999"}]}]}`), 404, `User not found.`)
	if v, _ := srv.Member("jane.doe@acme.test"); hasKey(v.Teams, "site-reliability") {
		t.Fatal("a failed PATCH applied its first operation")
	}
	expect(t, c.do("PATCH", scimGroups+"/"+gid, `{"Operations":[{"op":"add","path":"members","value":[]}]}`), 400, `schemas`)
	expect(t, c.do("PATCH", scimGroups+"/"+gid, `{"schemas":[],"Operations":[{"op":"replace","path":"name","value":"x"}]}`), 400, `Invalid Replace attr.`)
	expect(t, c.do("PATCH", scimGroups+"/"+gid, `{"schemas":[],"Operations":[{"op":"replace","value":{"id":1,"displayName":"SRE Team"}}]}`), 204, "")
	expect(t, c.get("/api/0/teams/acme/sre-team/"), 200, `"idp:provisioned":true`)
	expect(t, c.get(scimGroups+"/999"), 404, `Group not found.`)
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func TestFaults(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	srv.InjectFault(Fault{Pattern: PatternMembers, Method: "GET", Status: 503, Count: 2})
	expect(t, c.get(membersURL), 503, "Internal Error")
	expect(t, c.get(membersURL+"me/"), 200, "") // other pattern unaffected
	expect(t, c.get(membersURL), 503, "")
	expect(t, c.get(membersURL), 200, "")

	// After: the removal happens but the client sees a 502.
	srv.InjectFault(Fault{Pattern: PatternMember, Method: "DELETE", Status: 502, Count: 1, After: true})
	expect(t, c.do("DELETE", membersURL+memberID(t, srv.Sandbox, "jane.doe@acme.test")+"/", nil), 502, "")
	if _, ok := srv.Member("jane.doe@acme.test"); ok {
		t.Fatal("after-fault did not apply the change")
	}

	// Injected 429 burst via the control endpoint.
	expect(t, c.do("POST", "/_sandbox/faults", `{"pattern":"/api/0/organizations/*","kind":"rate_limit","count":3}`), 201, "")
	for i := 0; i < 3; i++ {
		r := c.get(membersURL)
		expect(t, r, 429, "too frequently")
		if r.header.Get("X-Sentry-Rate-Limit-Remaining") != "0" || r.header.Get("X-Sentry-Rate-Limit-Reset") == "" {
			t.Fatalf("fault 429 headers %v", r.header)
		}
	}
	expect(t, c.get(membersURL), 200, "")

	// Error rate: about half of 200 requests fail.
	srv.ClearFaults()
	expect(t, c.do("POST", "/_sandbox/faults", `[{"pattern":"`+PatternMember+`","method":"GET","status":500,"rate":0.5}]`), 201, `"rate":0.5`)
	failed := 0
	for i := 0; i < 200; i++ {
		if c.get(membersURL+"me/").status == 500 {
			failed++
		}
	}
	if failed < 60 || failed > 140 {
		t.Fatalf("%d of 200 failed at rate 0.5", failed)
	}
	expect(t, c.do("DELETE", "/_sandbox/faults", nil), 204, "")
	expect(t, c.get(membersURL+"me/"), 200, "")

	// Dropped connection. (A fresh connection: Go's transport silently
	// retries a GET whose reused keep-alive connection was closed.)
	fresh := &http.Transport{DisableKeepAlives: true}
	srv.InjectFault(Fault{Kind: FaultDrop, Count: 1})
	req, _ := http.NewRequest("GET", srv.URL+membersURL, nil)
	req.Header.Set("Authorization", "Bearer sandbox")
	if res, err := (&http.Client{Transport: fresh}).Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("dropped request answered %d", res.StatusCode)
	}

	// Timeout: the client gives up first.
	srv.InjectFault(Fault{Kind: FaultTimeout, Count: 1})
	req, _ = http.NewRequest("GET", srv.URL+membersURL, nil)
	req.Header.Set("Authorization", "Bearer sandbox")
	if res, err := (&http.Client{Timeout: 100e6, Transport: fresh}).Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("timeout request answered %d", res.StatusCode)
	}

	// Latency: counted separately.
	srv.ResetStats()
	srv.InjectFault(Fault{Kind: FaultLatency, Latency: 30e6, Count: 1})
	expect(t, c.get(membersURL+"me/"), 200, "")
	st := srv.Stats()
	if st.LatencySeconds < 0.03 || st.ServingSeconds < st.LatencySeconds {
		t.Fatalf("latency %v serving %v", st.LatencySeconds, st.ServingSeconds)
	}
	if len(srv.Faults()) != 0 {
		t.Fatalf("faults left: %v", srv.Faults())
	}
}

func TestAuditLogPagination(t *testing.T) {
	srv := NewServer(t, Options{RateLimit: -1})
	c := newClient(t, srv)
	for i := 0; i < 7; i++ {
		expect(t, c.do("POST", "/api/0/organizations/acme/teams/", map[string]string{"slug": fmt.Sprintf("t%d", i)}), 201, "")
	}
	var names []string
	url := srv.URL + "/api/0/organizations/acme/audit-logs/?event=team.create&per_page=3"
	for i := 0; i < 5; i++ {
		r := c.get(url)
		expect(t, r, 200, `"options":[`)
		var body struct {
			Rows []struct{ Data map[string]any } `json:"rows"`
		}
		r.json(t, &body)
		for _, row := range body.Rows {
			names = append(names, row.Data["slug"].(string))
		}
		mm := linkRe.FindStringSubmatch(r.header.Get("Link"))
		if mm == nil {
			t.Fatalf("bad link %q", r.header.Get("Link"))
		}
		if mm[5] == "false" {
			break
		}
		url = mm[4]
	}
	if strings.Join(names, ",") != "t6,t5,t4,t3,t2,t1,t0" {
		t.Fatalf("audit order %v", names)
	}
	expect(t, c.get("/api/0/organizations/acme/audit-logs/?event=no.such"), 200, `"rows":[]`)
}

func TestLoadSeed(t *testing.T) {
	s, err := LoadSeed(strings.NewReader(`{"organization":{"slug":"tiny","saml":true,"scim":false},
		"teams":[{"slug":"a"}],
		"members":[{"email":"o@tiny.test","orgRole":"owner","teams":{"a":"admin"}},
		           {"email":"jml-bot@acme.test","orgRole":"manager"},
		           {"email":"p@tiny.test","pending":true}],
		"generate":{"members":5,"teams":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	sb := New(Options{Seed: s})
	if n := len(sb.Members()); n != 8 {
		t.Fatalf("members = %d", n)
	}
	if v, _ := sb.Member("o@tiny.test"); v.Teams["a"] != "" {
		t.Fatalf("owner team admin should be stored as null, got %q", v.Teams["a"])
	}
	for _, bad := range []string{
		`{"organization":{},"members":[{"email":"x"}],"teams":[]}`,
		`{"organization":{},"members":[{"email":"a@b.c","teams":{"zz":""}}],"teams":[]}`,
		`{"organization":{},"members":[{"email":"a@b.c","orgRole":"boss"}],"teams":[]}`,
		`{"organization":{},"members":[],"teams":[],"unknown":1}`,
	} {
		if _, err := LoadSeed(strings.NewReader(bad)); err == nil {
			t.Fatalf("seed %s accepted", bad)
		}
	}
}

func TestSCIMAzureOmitsActive(t *testing.T) {
	seed := DemoSeed()
	seed.Org.SCIMProvider = "azure"
	srv := NewServer(t, Options{Seed: seed})
	r := newClient(t, srv).get(scimUsers + "/" + memberID(t, srv.Sandbox, "jane.doe@acme.test"))
	expect(t, r, 200, `"userName":"jane.doe@acme.test"`)
	if strings.Contains(string(r.body), `"active"`) {
		t.Fatalf("azure user has active: %s", r.body)
	}
}

// TestRemoveMemberDropsTheirPendingInvites: removing a member also drops the
// pending invites its user sent (Sentry deletes a leaving user's outstanding
// invites with the member, src/sentry/core/endpoints/organization_member/details.py),
// and nothing else: invites others sent and invites already accepted stay.
// The sandbox finds them through its inviter index, not a scan of every member.
func TestRemoveMemberDropsTheirPendingInvites(t *testing.T) {
	seed := &Seed{
		Org: SeedOrg{Slug: "acme"},
		Members: []SeedMember{
			{Email: "olivia.owner@acme.test", OrgRole: "owner"},
			{Email: "jml-bot@acme.test", OrgRole: "manager"},
			{Email: "ann.inviter@acme.test", OrgRole: "manager"},
			{Email: "bob.other@acme.test", OrgRole: "manager"},
			{Email: "p1@acme.test", Pending: true, InvitedBy: "ann.inviter@acme.test"},
			{Email: "p2@acme.test", Pending: true, InvitedBy: "ann.inviter@acme.test"},
			{Email: "p3@acme.test", Pending: true, InvitedBy: "bob.other@acme.test"},
			{Email: "joined@acme.test", InvitedBy: "ann.inviter@acme.test"},
		},
	}
	srv := NewServer(t, Options{Seed: seed})
	c := newClient(t, srv)
	// An invite sent through the API by ann is indexed too.
	expect(t, c.as("ann.inviter@acme.test").do("POST", membersURL, `{"email":"p4@acme.test","orgRole":"member"}`), 201, "")
	expect(t, c.do("DELETE", membersURL+memberID(t, srv.Sandbox, "ann.inviter@acme.test")+"/", nil), 204, "")
	for email, want := range map[string]bool{"p1@acme.test": false, "p2@acme.test": false, "p4@acme.test": false,
		"p3@acme.test": true, "joined@acme.test": true, "bob.other@acme.test": true} {
		if _, ok := srv.Member(email); ok != want {
			t.Errorf("%s present = %v, want %v", email, ok, want)
		}
	}
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	n := 0
	for _, set := range srv.st.invitesBy {
		for m := range set {
			n++
			if srv.st.members[m.id] != m {
				t.Errorf("removed %s still in the inviter index", m.Email())
			}
		}
	}
	if n != 2 { // p3 (bob's) and joined (ann's, accepted)
		t.Errorf("inviter index holds %d members, want 2", n)
	}
}
