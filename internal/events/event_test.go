package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

var fallback = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestParseGenericOK(t *testing.T) {
	body := `{"type": "leaver",
 "occurred_at": "2026-11-28T10:00:00Z",
 "effective_at": "2026-11-28T17:00:00+01:00",
 "person": {"id": "E-1001", "email": "jane@acme.com", "name": "Jane Doe",
            "status": "terminated", "department": "Payments", "title": "Engineer",
            "groups": ["backend-eng"], "manager_email": "lead@acme.com"}}`
	ev, err := events.ParseGeneric([]byte(body), fallback)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != events.Leaver || ev.Person.Status != events.Terminated || ev.Person.Email != "jane@acme.com" ||
		ev.Person.ID != "E-1001" || ev.Person.Department != "Payments" || len(ev.Person.Groups) != 1 {
		t.Fatalf("unexpected event %+v", ev)
	}
	if !ev.OccurredAt.Equal(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("occurred_at = %v", ev.OccurredAt)
	}
	if ev.EffectiveAt == nil || !ev.EffectiveAt.Equal(time.Date(2026, 11, 28, 16, 0, 0, 0, time.UTC)) || ev.EffectiveAt.Location() != time.UTC {
		t.Fatalf("effective_at = %v", ev.EffectiveAt)
	}
	if ev.Person.Key() != "id:E-1001" {
		t.Fatalf("key = %s", ev.Person.Key())
	}
}

func TestParseGenericImpliedStatusAndFallback(t *testing.T) {
	cases := map[string]events.Status{
		`{"type":"leaver","person":{"email":"a@b.co"}}`:              events.Terminated,
		`{"type":"joiner","person":{"email":"a@b.co"}}`:              events.Active,
		`{"type":"rehire","person":{"email":"a@b.co"}}`:              events.Active,
		`{"type":"suspend","person":{"email":"a@b.co"}}`:             events.Suspended,
		`{"type":"mover","person":{"email":"a@b.co"}}`:               "",
		`{"type":"update","person":{"id":"7","status":"suspended"}}`: events.Suspended,
	}
	for body, want := range cases {
		ev, err := events.ParseGeneric([]byte(body), fallback)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if ev.Person.Status != want {
			t.Errorf("%s: status %q, want %q", body, ev.Person.Status, want)
		}
		if !ev.OccurredAt.Equal(fallback) {
			t.Errorf("%s: occurred_at %v, want fallback", body, ev.OccurredAt)
		}
	}
	ev, _ := events.ParseGeneric([]byte(`{"type":"leaver","person":{"email":"Jane.Doe@Acme.com"}}`), fallback)
	if ev.Person.Key() != "email:jane.doe@acme.com" {
		t.Fatalf("email key = %s", ev.Person.Key())
	}
}

func TestParseGenericRejects(t *testing.T) {
	cases := []struct{ name, body, reason string }{
		{"empty", ``, "JSON object"},
		{"array", `[{"type":"leaver"}]`, "JSON object"},
		{"string", `"leaver"`, "JSON object"},
		{"two objects", `{"type":"leaver","person":{"id":"1"}} {}`, "exactly one"},
		{"trailing garbage", `{"type":"leaver","person":{"id":"1"}} x`, "exactly one"},
		{"truncated", `{"type":"leaver","person":{"id":"1"`, "malformed JSON"},
		{"missing type", `{"person":{"id":"1"}}`, "type is required"},
		{"unknown type", `{"type":"fired","person":{"id":"1"}}`, `unknown type "fired"`},
		{"type wrong kind", `{"type":5,"person":{"id":"1"}}`, "malformed JSON"},
		{"missing person", `{"type":"leaver"}`, "person is required"},
		{"person null", `{"type":"leaver","person":null}`, "person is required"},
		{"no id or email", `{"type":"leaver","person":{"name":"X"}}`, "id or an email"},
		{"blank id and email", `{"type":"leaver","person":{"id":"  ","email":" "}}`, "id or an email"},
		{"bad email", `{"type":"leaver","person":{"email":"not-an-email"}}`, "not an email"},
		{"display-name email", `{"type":"leaver","person":{"email":"Jane <jane@acme.com>"}}`, "not an email"},
		{"unknown status", `{"type":"update","person":{"id":"1","status":"gone"}}`, "unknown person.status"},
		{"leaver active", `{"type":"leaver","person":{"id":"1","status":"active"}}`, "contradicts"},
		{"joiner terminated", `{"type":"joiner","person":{"id":"1","status":"terminated"}}`, "contradicts"},
		{"rehire suspended", `{"type":"rehire","person":{"id":"1","status":"suspended"}}`, "contradicts"},
		{"suspend active", `{"type":"suspend","person":{"id":"1","status":"active"}}`, "contradicts"},
		{"bad time", `{"type":"leaver","occurred_at":"yesterday","person":{"id":"1"}}`, "RFC 3339"},
		{"groups not array", `{"type":"leaver","person":{"id":"1","groups":"eng"}}`, "groups"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := events.ParseGeneric([]byte(tc.body), fallback)
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("reason %q does not mention %q", err, tc.reason)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	eff := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	in := events.Event{ID: "msg_1", Source: "generic", Type: events.Mover, OccurredAt: fallback, EffectiveAt: &eff, ReceivedAt: fallback.Add(time.Second),
		Person: events.Person{ID: "E-1", Email: "a@b.co", Groups: []string{"g"}, Attributes: map[string]string{"cost_center": "42"}}}
	b, err := events.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := events.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Type != in.Type || !out.EffectiveAt.Equal(eff) || out.Person.Attributes["cost_center"] != "42" || out.MsgID() != "generic:msg_1" {
		t.Fatalf("round trip: %+v", out)
	}
	if out.Subject() != "jml.events.generic.mover" {
		t.Fatalf("subject %s", out.Subject())
	}
	if _, err := events.Unmarshal([]byte(`{"id":"x"}`)); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("incomplete event decoded: %v", err)
	}
	if _, err := events.Unmarshal([]byte(`{`)); err == nil {
		t.Fatal("garbage decoded")
	}
}

// FuzzParseGeneric: no panic on any input; an accepted event always satisfies the
// schema's invariants.
func FuzzParseGeneric(f *testing.F) {
	for _, s := range []string{
		`{"type":"leaver","occurred_at":"2026-11-28T10:00:00Z","person":{"id":"E-1","email":"jane@acme.com","status":"terminated"}}`,
		`{"type":"mover","person":{"email":"a@b.co","groups":["x"],"attributes":{"k":"v"}}}`,
		`{"type":"joiner","person":{"id":"1","status":"active"}}`, `[]`, `{}`, `{"type":null}`, `   `,
		// Length and charset boundaries.
		`{"type":"leaver","person":{"id":"` + strings.Repeat("9", events.MaxIDLen) + `"}}`,
		`{"type":"leaver","person":{"id":"` + strings.Repeat("9", events.MaxIDLen+1) + `"}}`,
		`{"type":"leaver","person":{"email":"` + strings.Repeat("a", 64) + "@" + strings.Repeat("b", events.MaxEmailLen-69) + `.com"}}`,
		`{"type":"leaver","person":{"email":"` + strings.Repeat("a", 64) + "@" + strings.Repeat("b", events.MaxEmailLen-68) + `.com"}}`,
		"{\"type\":\"leaver\",\"person\":{\"id\":\"E\u0001\"}}", "{\"type\":\"leaver\",\"person\":{\"id\":\"E\xff\"}}",
		`{"type":"joiner","type":"leaver","person":{"id":"1"}}`, `{"Type":"leaver","person":{"id":"1"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := events.ParseGeneric(body, fallback)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if !ev.Type.Valid() || (ev.Person.ID == "" && ev.Person.Email == "") {
			t.Fatalf("accepted invalid event %+v", ev)
		}
		if ev.Person.Status != "" && !ev.Person.Status.Valid() {
			t.Fatalf("accepted status %q", ev.Person.Status)
		}
		if ev.OccurredAt.IsZero() {
			t.Fatal("zero occurred_at")
		}
		if len(ev.Person.ID) > events.MaxIDLen || len(ev.Person.Email) > events.MaxEmailLen || !utf8.ValidString(ev.Person.ID) ||
			strings.ContainsFunc(ev.Person.ID+ev.Person.Email+ev.Person.ManagerEmail, unicode.IsControl) {
			t.Fatalf("accepted a person over the limits: %q %q", ev.Person.ID, ev.Person.Email)
		}
	})
}

// TestParseGenericStrict: what the README promises: duplicate, unknown and
// case-variant members, invalid UTF-8 and display-name manager emails are a
// 400 with the reason, never silently resolved.
func TestParseGenericStrict(t *testing.T) {
	for _, c := range []struct{ name, body, reason string }{
		{"duplicate type", `{"type":"joiner","type":"leaver","person":{"id":"E-1"}}`, "duplicate member name at /type"},
		{"duplicate in person", `{"type":"leaver","person":{"id":"E-1","id":"E-2"}}`, "duplicate member name at /person/id"},
		{"unknown member", `{"type":"leaver","effective":"2026-01-01T00:00:00Z","person":{"id":"E-1"}}`, "unknown member /effective"},
		{"case variant", `{"type":"leaver","Effective_At":"2030-01-01T00:00:00Z","person":{"id":"E-1"}}`, "unknown member /Effective_At"},
		{"unknown person member", `{"type":"leaver","person":{"id":"E-1","mail":"x@y.z"}}`, "unknown member /person/mail"},
		{"invalid UTF-8", "{\"type\":\"leaver\",\"person\":{\"id\":\"E-\xff\"}}", "invalid UTF-8"},
		{"control character", `{"type":"leaver","person":{"id":"E-\u0007"}}`, "control characters"},
		{"id over the limit", `{"type":"leaver","person":{"id":"` + strings.Repeat("1", 257) + `"}}`, "longer than 256"},
		{"manager display name", `{"type":"mover","person":{"id":"E-1","manager_email":"Boss <boss@acme.com>"}}`, "manager_email"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := events.ParseGeneric([]byte(c.body), fallback)
			if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.reason)
			}
		})
	}
	if _, err := events.ParseGeneric([]byte(`{"type":"leaver","person":{"id":"`+strings.Repeat("1", 256)+`","manager_email":"boss@acme.com"}}`), fallback); err != nil {
		t.Fatalf("largest allowed id refused: %v", err)
	}
}

func TestLimits(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	email := func(n int) string { return strings.Repeat("a", 64) + "@" + strings.Repeat("b", n-69) + ".com" }
	if err := events.CheckEmail("e", email(254)); err != nil {
		t.Fatalf("254: %v", err)
	}
	if err := events.CheckEmail("e", email(255)); err == nil {
		t.Fatal("255-character email accepted")
	}
	if err := events.CheckEmail("e", "Jane <jane@acme.com>"); err == nil {
		t.Fatal("display name accepted")
	}
	long := strings.Repeat("x", 3000)
	if got := events.SafeID(long); len(got) > events.MaxIDLen || got != events.SafeID(long) || !strings.HasPrefix(got, "sha256:") {
		t.Fatalf("SafeID(3 KB) = %q", got)
	}
	if got := events.SafeID("evt-1"); got != "evt-1" {
		t.Fatalf("SafeID changed a short id: %q", got)
	}
	if m := (events.Event{Source: "okta", ID: long}).MsgID(); len(m) > 300 {
		t.Fatalf("MsgID unbounded: %d bytes", len(m))
	}
	ev := events.Event{ID: "x", OccurredAt: now.Add(5 * time.Minute), Person: events.Person{ID: "E-1"}}
	if err := ev.Check(now, 5*time.Minute); err != nil {
		t.Fatalf("at the tolerance: %v", err)
	}
	ev.OccurredAt = now.Add(5*time.Minute + time.Second)
	if err := ev.Check(now, 5*time.Minute); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("past the tolerance: %v", err)
	}
	ev.OccurredAt = now
	eff := now.Add(400 * 24 * time.Hour)
	ev.EffectiveAt = &eff
	if err := ev.Check(now, 0); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("effective_at 400 days ahead: %v", err)
	}
	if k := (events.Person{Email: "jane@acme.com"}).LogKey(); strings.Contains(k, "jane") {
		t.Fatalf("LogKey leaks the email: %s", k)
	}
}
