package openapicheck

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	tMember = "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/"
	tTeams  = "/api/0/organizations/{organization_id_or_slug}/teams/"
)

// strict loads the real schema with an allowlist made of lines.
func strict(t *testing.T, lines ...string) *Checker {
	t.Helper()
	spec, _, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	al := filepath.Join(t.TempDir(), "allow.txt")
	if err := os.WriteFile(al, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(spec, al)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exchange builds an Exchange whose path values are set as the mux would.
func exchange(method, tmpl, uri string, pv map[string]string, reqBody string, status int, body string) Exchange {
	r := httptest.NewRequest(method, uri, nil)
	for k, v := range pv {
		r.SetPathValue(k, v)
	}
	if reqBody != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	h := http.Header{}
	if body != "" {
		h.Set("Content-Type", "application/json")
	}
	return Exchange{Method: method, Template: tmpl, Request: r, RequestBody: []byte(reqBody), Status: status, Header: h, Body: []byte(body)}
}

func TestSpecIsValid(t *testing.T) {
	c, err := LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateSpec(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWrongResponseIsCaught(t *testing.T) {
	c := strict(t)
	pv := map[string]string{"organization_id_or_slug": "acme", "member_id": "7"}
	// id must be a string and email is required; 200 is documented
	x := exchange("GET", tMember, "/api/0/organizations/acme/members/7/", pv, "", 200, `{"id":7,"role":"member"}`)
	vs := c.Check(context.Background(), x)
	if len(vs) == 0 {
		t.Fatal("a member with a numeric id and no email passed the schema")
	}
	var ptrs []string
	for _, v := range vs {
		if v.Where != "response" || v.Status != 200 {
			t.Errorf("unexpected violation %v", v)
		}
		ptrs = append(ptrs, v.Pointer)
	}
	if !strings.Contains(strings.Join(ptrs, " "), "/id") {
		t.Errorf("want a violation at /id, got %v", ptrs)
	}
}

func TestUndocumentedStatusAndOperation(t *testing.T) {
	c := strict(t)
	pv := map[string]string{"organization_id_or_slug": "acme", "member_id": "7"}
	vs := c.Check(context.Background(), exchange("GET", tMember, "/api/0/organizations/acme/members/7/", pv, "", 418, `{}`))
	if len(vs) != 1 || vs[0].Where != "status" {
		t.Fatalf("want one status violation, got %v", vs)
	}
	vs = c.Check(context.Background(), exchange("PATCH", tMember, "/api/0/organizations/acme/members/7/", pv, "{}", 200, `{}`))
	if len(vs) != 1 || vs[0].Where != "operation" {
		t.Fatalf("want one operation violation, got %v", vs)
	}
	if vs := c.Check(context.Background(), exchange("GET", "/api/0/organizations/{organization_id_or_slug}/audit-logs/",
		"/api/0/organizations/acme/audit-logs/", nil, "", 200, `[]`)); len(vs) != 0 {
		t.Fatalf("a path the schema lacks is not checked, got %v", vs)
	}
}

// TestLookAheadPattern: the team slug pattern ^(?![0-9]+$)[a-z0-9_\-]+$ has
// a look-ahead Go's regexp lacks; regexp2 enforces it (a request accepted
// with an all-digit slug is a violation, a normal slug is not).
func TestLookAheadPattern(t *testing.T) {
	c := strict(t)
	pv := map[string]string{"organization_id_or_slug": "acme"}
	team := `{"id":"1","slug":"x","name":"x","dateCreated":"2025-01-01T00:00:00Z","isMember":true,"teamRole":null,"flags":{"idp:provisioned":false},"access":[],"hasAccess":true,"isPending":false,"memberCount":1,"avatar":{"avatarType":"letter_avatar","avatarUuid":null}}`
	bad := c.Check(context.Background(), exchange("POST", tTeams, "/api/0/organizations/acme/teams/", pv, `{"slug":"12345"}`, 201, team))
	found := false
	for _, v := range bad {
		if v.Where == "request" && v.Pointer == "/slug" {
			found = true
		}
	}
	if !found {
		t.Fatalf("an all-digit slug passed the pattern: %v", bad)
	}
	for _, v := range c.Check(context.Background(), exchange("POST", tTeams, "/api/0/organizations/acme/teams/", pv, `{"slug":"growth-1"}`, 201, team)) {
		if v.Where == "request" {
			t.Errorf("a valid slug was flagged: %v", v)
		}
	}
	m, err := compileECMA(`^(?![0-9]+$)[a-z0-9_\-]+$`)
	if err != nil {
		t.Fatal(err)
	}
	if m.MatchString("123") || !m.MatchString("a123") {
		t.Fatal("look-ahead not honoured")
	}
}

func TestAllowlist(t *testing.T) {
	pv := map[string]string{"organization_id_or_slug": "acme", "member_id": "7"}
	x := exchange("GET", tMember, "/api/0/organizations/acme/members/7/", pv, "", 418, `{}`)
	c := strict(t, "* * 429 # rate limits", "GET "+tMember+" 418 # teapot", "* * 418 # any teapot")
	if vs := c.Check(context.Background(), x); len(vs) != 0 {
		t.Fatalf("allowlisted status reported: %v", vs)
	}
	// the most specific line is the one used
	if got := c.UnusedRules(); len(got) != 2 || !strings.Contains(got[1], "any teapot") {
		t.Fatalf("unused = %v", got)
	}
	if !pointerMatch(splitPointer("/teamRoles/*/role"), splitPointer("/teamRoles/3/role")) ||
		pointerMatch(splitPointer("/teamRoles/*/role"), splitPointer("/teamRoles/3")) ||
		!pointerMatch(splitPointer("/a/**"), splitPointer("/a/b/c")) {
		t.Fatal("pointer patterns")
	}
	for _, bad := range []string{"GET /x 200", "GET /x # no status", "GET /x 200 body:/a # where?"} {
		al := filepath.Join(t.TempDir(), "a.txt")
		_ = os.WriteFile(al, []byte(bad), 0o600)
		if _, err := readAllowlist(al); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestCollectorGroups(t *testing.T) {
	col := NewCollector()
	v := Violation{Method: "GET", Template: tMember, Status: 200, Where: "response", Pointer: "/id", Reason: "bad", URI: "/a"}
	w := v
	w.URI = "/b"
	col.Add(v, w)
	if col.Len() != 2 || !strings.Contains(col.Report(), "2× GET") || strings.Count(col.Report(), "\n") != 1 {
		t.Fatalf("report %q", col.Report())
	}
}

func BenchmarkLoadDefault(b *testing.B) {
	for b.Loop() {
		if _, err := LoadDefault(); err != nil {
			b.Fatal(err)
		}
	}
}
