package sentry

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestMemberJSON(t *testing.T) {
	body := `{"id":"57377908164","email":"a@x.com","name":"A",
	 "user":{"id":"12","email":"A@x.com","name":"A","emails":[{"id":"1","email":"a@x.com","is_verified":true},{"id":"2","email":"b@y.com","is_verified":false}]},
	 "role":"member","roleName":"Member","orgRole":"manager","pending":false,"expired":false,
	 "flags":{"idp:provisioned":true,"sso:linked":false},
	 "dateCreated":"2021-07-06T21:13:01.120263Z","inviteStatus":"approved","inviterName":null,
	 "teams":["payments"],"teamRoles":[{"teamSlug":"payments","role":null}]}`
	var m Member
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	want := Member{
		ID: "57377908164", Email: "a@x.com", Name: "A", OrgRole: "manager",
		User:  &User{ID: "12", Email: "A@x.com", Name: "A", Emails: []UserEmail{{"a@x.com", true}, {"b@y.com", false}}},
		Flags: map[string]bool{"idp:provisioned": true, "sso:linked": false}, InviteStatus: "approved",
		Teams: []string{"payments"}, TeamRoles: []TeamRole{{TeamSlug: "payments"}},
		DateCreated: time.Date(2021, 7, 6, 21, 13, 1, 120263000, time.UTC),
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
	if !m.IdPProvisioned() || m.UserID() != "12" || !MatchesEmail(m, "a@X.com") || MatchesEmail(m, "b@y.com") {
		t.Error("helpers disagree")
	}
	// Round trip through our own encoding.
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var m2 Member
	if err := json.Unmarshal(b, &m2); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Errorf("round trip: %+v", m2)
	}
	// Pending invite; deprecated role only.
	var p Member
	if err := json.Unmarshal([]byte(`{"id":"1","email":"n@x.com","name":"n@x.com","user":null,"role":"member","pending":true}`), &p); err != nil {
		t.Fatal(err)
	}
	if p.User != nil || p.OrgRole != "member" || !p.Pending || p.UserID() != "" {
		t.Errorf("pending = %+v", p)
	}
}

func TestMissingScopes(t *testing.T) {
	got := missingScopes([]string{"org:admin", "member:admin", "team:write", "project:read"}, requiredScopes)
	want := []string{"project:write"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("missing = %v, want %v", got, want)
	}
}

func TestParseLimits(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := map[string][]string{
		"X-Sentry-Rate-Limit-Limit":           {"40"},
		"X-Sentry-Rate-Limit-Remaining":       {"3"},
		"X-Sentry-Rate-Limit-Reset":           {"1700000001"},
		"X-Sentry-Rate-Limit-Concurrentlimit": {"25"},
	}
	l := parseLimits(h, now)
	if !l.Present || l.Limit != 40 || l.Remaining != 3 || !l.Reset.Equal(time.Unix(1_700_000_001, 0)) || l.ConcurrentLimit != 25 {
		t.Errorf("limits = %+v", l)
	}
	if l := parseLimits(map[string][]string{}, now); l.Present {
		t.Errorf("no headers: %+v", l)
	}
}
