package okta_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta/oktatest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

const oktaSecret = "Basic YWRtaW46c3VwZXJzZWNyZXQ="

var oktaNow = time.Date(2026, 11, 28, 10, 0, 6, 0, time.UTC)

func oktaFixture(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "testdata", "webhooks", "okta", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func mustOkta(tb testing.TB, cfg sources.Config) *okta.Source {
	tb.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = []string{oktaSecret}
	}
	o, err := okta.NewSource(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

func oktaPost(body, auth string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

type oktaWant struct {
	id     string
	typ    events.Type
	status events.Status
	email  string
	oktaID string
	attrs  map[string]string
	groups []string
}

func checkOkta(t *testing.T, got sources.Parsed, ignored int, want []oktaWant) {
	t.Helper()
	if got.Ignored != ignored {
		t.Errorf("ignored %d, want %d", got.Ignored, ignored)
	}
	if len(got.Events) != len(want) {
		for _, e := range got.Events {
			t.Logf("got %s %s %s", e.ID, e.Type, e.Person.Email)
		}
		t.Fatalf("%d events, want %d", len(got.Events), len(want))
	}
	for i, w := range want {
		e := got.Events[i]
		if e.ID != w.id || e.Type != w.typ || e.Person.Status != w.status || e.Person.Email != w.email {
			t.Errorf("event %d = %s %s %q %s, want %s %s %q %s", i, e.ID, e.Type, e.Person.Status, e.Person.Email, w.id, w.typ, w.status, w.email)
		}
		if e.Source != "okta" || e.Person.ID != "" || e.Person.Attributes["okta_id"] != w.oktaID {
			t.Errorf("event %d: source %q, person id %q, okta_id %q", i, e.Source, e.Person.ID, e.Person.Attributes["okta_id"])
		}
		if e.OccurredAt.IsZero() || !e.ReceivedAt.Equal(oktaNow) {
			t.Errorf("event %d times: %v %v", i, e.OccurredAt, e.ReceivedAt)
		}
		for k, v := range w.attrs {
			if got, ok := e.Person.Attributes[k]; !ok || got != v {
				t.Errorf("event %d attribute %s = %q (set %v), want %q", i, k, got, ok, v)
			}
		}
		if !slices.Equal(e.Person.Groups, w.groups) {
			t.Errorf("event %d groups %v, want %v", i, e.Person.Groups, w.groups)
		}
		// Every event must survive the wire (the worker's decoder).
		b, _ := events.Marshal(e)
		if _, err := events.Unmarshal(b); err != nil {
			t.Errorf("event %d does not decode: %v", i, err)
		}
	}
}

func TestOktaFixtures(t *testing.T) {
	o := mustOkta(t, sources.Config{})
	tests := []struct {
		file    string
		ignored int
		want    []oktaWant
	}{
		{"deactivate.json", 0, []oktaWant{{
			id: "ab62c0bc-2837-11eb-9823-9fb8f750c5a9", typ: events.Leaver, status: events.Terminated,
			email: "john.doe@example.com", oktaID: "00u3m90rxKjGQ0G6L1d6",
		}}},
		{"session-start.json", 1, nil},
		{"preview-null-target.json", 1, nil},
		{"batch.json", 2, []oktaWant{
			{id: "11111111-0000-4000-8000-000000000001", typ: events.Joiner, status: events.Active, email: "new.hire@acme.com", oktaID: "00unew0001"},
			{id: "11111111-0000-4000-8000-000000000002", typ: events.Suspend, status: events.Suspended, email: "paused@acme.com", oktaID: "00usus0002"},
			{id: "11111111-0000-4000-8000-000000000003", typ: events.Update, email: "new.hire@acme.com", oktaID: "00unew0001",
				attrs: map[string]string{"okta.group.add": "backend-eng", "okta.group.remove": "", "okta.group.id": "00g1eng0003"}},
			{id: "11111111-0000-4000-8000-000000000004", typ: events.Update, email: "new.hire@acme.com", oktaID: "00unew0001",
				attrs: map[string]string{"okta.group.add": "", "okta.group.remove": "ops", "okta.group.id": "00g1ops0004"}},
			{id: "11111111-0000-4000-8000-000000000005", typ: events.Update, email: "new.hire@acme.com", oktaID: "00unew0001"},
			{id: "11111111-0000-4000-8000-000000000008", typ: events.Rehire, status: events.Active, email: "back.again@acme.com", oktaID: "00uback0008"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := o.Parse(oktaPost(oktaFixture(t, tt.file), oktaSecret), []byte(oktaFixture(t, tt.file)), oktaNow)
			if err != nil {
				t.Fatal(err)
			}
			checkOkta(t, got, tt.ignored, tt.want)
		})
	}
	t.Run("OccurredAt is published", func(t *testing.T) {
		body := oktaFixture(t, "deactivate.json")
		got, _ := o.Parse(oktaPost(body, oktaSecret), []byte(body), oktaNow)
		if want := time.Date(2020, 11, 16, 18, 15, 12, 862000000, time.UTC); !got.Events[0].OccurredAt.Equal(want) {
			t.Errorf("OccurredAt %v, want %v", got.Events[0].OccurredAt, want)
		}
	})
}

func TestOktaEventMapping(t *testing.T) {
	o := mustOkta(t, sources.Config{})
	tests := []struct {
		eventType string
		typ       events.Type
		status    events.Status
		ignored   bool
	}{
		{"user.lifecycle.create", events.Joiner, events.Active, false},
		{"user.lifecycle.activate", events.Update, events.Active, false},
		{"user.lifecycle.reactivate", events.Rehire, events.Active, false},
		{"user.lifecycle.unsuspend", events.Update, events.Active, false},
		{"user.lifecycle.suspend", events.Suspend, events.Suspended, false},
		{"user.lifecycle.deactivate", events.Leaver, events.Terminated, false},
		{"user.lifecycle.delete.initiated", events.Leaver, events.Terminated, false},
		{"user.account.update_profile", events.Update, "", false},
		{"user.account.lock", "", "", true},
		{"application.user_membership.add", "", "", true},
		{"user.session.start", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.eventType, func(t *testing.T) {
			body := fmt.Sprintf(`{"eventType":"com.okta.event_hook","eventId":"e1","data":{"events":[{"uuid":"u1","published":"2026-11-28T10:00:00Z","eventType":%q,"outcome":{"result":"success"},"target":[{"id":"00u1","type":"User","alternateId":"jane@acme.com"}]}]}}`, tt.eventType)
			got, err := o.Parse(oktaPost(body, oktaSecret), []byte(body), oktaNow)
			if err != nil {
				t.Fatal(err)
			}
			if tt.ignored {
				if got.Ignored != 1 || len(got.Events) != 0 {
					t.Fatalf("%+v", got)
				}
				return
			}
			if len(got.Events) != 1 || got.Events[0].Type != tt.typ || got.Events[0].Person.Status != tt.status {
				t.Fatalf("%+v", got)
			}
		})
	}
	if got := okta.EventTypes(); !slices.Contains(got, "user.lifecycle.deactivate") || !slices.IsSorted(got) {
		t.Errorf("OktaEventTypes %v", got)
	}
}

func TestOktaRejects(t *testing.T) {
	o := mustOkta(t, sources.Config{Secrets: []string{"old-secret", oktaSecret}})
	good := oktaFixture(t, "deactivate.json")
	tests := []struct {
		name string
		body string
		auth string
		err  error
	}{
		{"ErrNoAuthorization", good, "", sources.ErrUnauthorized},
		{"ErrWrongAuthorization", good, "Basic d3Jvbmc6d3Jvbmc=", sources.ErrUnauthorized},
		{"ErrPrefixOfSecret", good, "Basic YWRtaW46", sources.ErrUnauthorized},
		{"ErrSchemeOnly", good, "Basic", sources.ErrUnauthorized},
		{"ErrNotJSON", "not json", oktaSecret, events.ErrInvalid},
		{"ErrArray", `[{"data":{}}]`, oktaSecret, events.ErrInvalid},
		{"ErrNoEvents", `{"eventType":"com.okta.event_hook","data":{}}`, oktaSecret, events.ErrInvalid},
		{"ErrTruncated", good[:len(good)/2], oktaSecret, events.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := o.Parse(oktaPost(tt.body, tt.auth), []byte(tt.body), oktaNow)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
		})
	}
	t.Run("OK rotated secret", func(t *testing.T) {
		if _, err := o.Parse(oktaPost(good, "old-secret"), []byte(good), oktaNow); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OK malformed element is ignored, not fatal", func(t *testing.T) {
		body := `{"data":{"events":[42,{"uuid":"u2","eventType":"user.lifecycle.suspend","target":[{"id":"00u2","type":"User","alternateId":"a@acme.com"}]}]}}`
		got, err := o.Parse(oktaPost(body, oktaSecret), []byte(body), oktaNow)
		if err != nil || got.Ignored != 1 || len(got.Events) != 1 || !got.Events[0].OccurredAt.Equal(oktaNow) {
			t.Fatalf("%+v %v", got, err)
		}
	})
	t.Run("OK user without email is ignored", func(t *testing.T) {
		body := `{"data":{"events":[{"uuid":"u3","eventType":"user.lifecycle.deactivate","target":[{"id":"00u3","type":"User","alternateId":"jdoe"}]}]}}`
		got, err := o.Parse(oktaPost(body, oktaSecret), []byte(body), oktaNow)
		if err != nil || got.Ignored != 1 || len(got.Events) != 0 {
			t.Fatalf("%+v %v", got, err)
		}
	})
}

func TestNewOkta(t *testing.T) {
	for name, cfg := range map[string]sources.Config{
		"ErrNoSecret":     {},
		"ErrBlankSecret":  {Secrets: []string{"  "}},
		"ErrAPIURLOnly":   {Secrets: []string{"x"}, APIURL: "https://acme.okta.com"},
		"ErrAPITokenOnly": {Secrets: []string{"x"}, APIToken: "t"},
		"ErrBadAPIURL":    {Secrets: []string{"x"}, APIURL: "acme.okta.com", APIToken: "t"},
	} {
		if _, err := okta.NewSource(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestOktaHandshake(t *testing.T) {
	o := mustOkta(t, sources.Config{})
	tests := []struct {
		name      string
		method    string
		challenge string
		auth      string
		handled   bool
		status    int
		body      string
	}{
		{"OK", "GET", "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg", oktaSecret, true, 200, `{"verification":"Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg"}`},
		{"OK vector 3.6", "GET", "abc123", oktaSecret, true, 200, `{"verification":"abc123"}`},
		{"ErrWrongAuthorization", "GET", "abc123", "nope", true, 401, `{"error":"unauthorized"}`},
		{"ErrNoAuthorization", "GET", "abc123", "", true, 401, `{"error":"unauthorized"}`},
		{"ErrChallengeTooLong", "GET", strings.Repeat("a", 1025), oktaSecret, true, 400, ""},
		{"NotAChallenge", "GET", "", oktaSecret, false, 0, ""},
		{"PostIsNotAHandshake", "POST", "abc123", oktaSecret, false, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/hooks/okta", nil)
			if tt.challenge != "" {
				r.Header.Set("x-okta-verification-challenge", tt.challenge)
			}
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			if got := o.Handshake(w, r, nil); got != tt.handled {
				t.Fatalf("handled %v, want %v", got, tt.handled)
			}
			if !tt.handled {
				return
			}
			if w.Code != tt.status || (tt.body != "" && strings.TrimSpace(w.Body.String()) != tt.body) {
				t.Fatalf("%d %q, want %d %q", w.Code, w.Body.String(), tt.status, tt.body)
			}
			if w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", w.Header().Get("Content-Type"))
			}
		})
	}
}

// seedOktaAPI puts the batch fixture's users and groups into a simulator.
func seedOktaAPI(tb testing.TB) *oktatest.Server {
	sim := oktatest.NewServer(tb)
	sim.AddUser(oktatest.User{ID: "00unew0001", Profile: map[string]string{
		"login": "new.hire@acme.com", "email": "new.hire@acme.com", "firstName": "New", "lastName": "Hire",
		"department": "Payments", "title": "Engineer", "manager": "Lead Person", "managerId": "00ulead",
	}})
	sim.AddUser(oktatest.User{ID: "00ujdoe", Profile: map[string]string{"login": "jdoe", "email": "jdoe@acme.com"}})
	sim.AddGroup(oktatest.Group{ID: "00geveryone", Name: "Everyone", Type: "BUILT_IN"}, "00unew0001")
	sim.AddGroup(oktatest.Group{ID: "00g1eng0003", Name: "backend-eng"}, "00unew0001")
	sim.AddGroup(oktatest.Group{ID: "00gpay", Name: "payments"}, "00unew0001")
	return sim
}

func TestOktaEnrichment(t *testing.T) {
	sim := seedOktaAPI(t)
	o := mustOkta(t, sources.Config{APIURL: sim.URL, APIToken: sim.Token})
	body := oktaFixture(t, "batch.json")
	got, err := o.Parse(oktaPost(body, oktaSecret), []byte(body), oktaNow)
	if err != nil {
		t.Fatal(err)
	}
	full := []string{"backend-eng", "payments"} // BUILT_IN "Everyone" left out
	checkOkta(t, got, 2, []oktaWant{
		{id: "11111111-0000-4000-8000-000000000001", typ: events.Joiner, status: events.Active, email: "new.hire@acme.com", oktaID: "00unew0001"},
		{id: "11111111-0000-4000-8000-000000000002", typ: events.Suspend, status: events.Suspended, email: "paused@acme.com", oktaID: "00usus0002"},
		{id: "11111111-0000-4000-8000-000000000003", typ: events.Update, email: "new.hire@acme.com", oktaID: "00unew0001", groups: full,
			attrs: map[string]string{"okta.group.add": "backend-eng"}},
		{id: "11111111-0000-4000-8000-000000000004", typ: events.Update, email: "new.hire@acme.com", oktaID: "00unew0001", groups: full,
			attrs: map[string]string{"okta.group.remove": "ops"}},
		{id: "11111111-0000-4000-8000-000000000005", typ: events.Update, email: "new.hire@acme.com", oktaID: "00unew0001",
			attrs: map[string]string{"okta.department": "Payments", "okta.title": "Engineer", "okta.manager": "Lead Person", "okta.status": "ACTIVE"}},
		{id: "11111111-0000-4000-8000-000000000008", typ: events.Rehire, status: events.Active, email: "back.again@acme.com", oktaID: "00uback0008"},
	})
	if ev := got.Events[4]; ev.Person.Name != "New Hire" || ev.Person.Department != "" {
		t.Errorf("profile event: name %q, department %q (IdP must not set HR fields)", ev.Person.Name, ev.Person.Department)
	}
	// Each user is re-read once per delivery.
	reqs := strings.Join(sim.Requests(), "\n")
	if n := strings.Count(reqs, "/api/v1/users/00unew0001/groups"); n != 1 {
		t.Errorf("%d group reads of the same user:\n%s", n, reqs)
	}

	t.Run("login that is not an address is resolved through the API", func(t *testing.T) {
		body := `{"data":{"events":[{"uuid":"u9","eventType":"user.lifecycle.deactivate","target":[{"id":"00ujdoe","type":"User","alternateId":"jdoe"}]}]}}`
		got, err := o.Parse(oktaPost(body, oktaSecret), []byte(body), oktaNow)
		if err != nil || len(got.Events) != 1 || got.Events[0].Person.Email != "jdoe@acme.com" {
			t.Fatalf("%+v %v", got, err)
		}
	})
	t.Run("API failure falls back to the thin event", func(t *testing.T) {
		sim.FailNext("/api/v1/users/", http.StatusInternalServerError, 100)
		got, err := o.Parse(oktaPost(body, oktaSecret), []byte(body), oktaNow)
		if err != nil || len(got.Events) != 6 {
			t.Fatalf("%d events, %v", len(got.Events), err)
		}
		if g := got.Events[2]; g.Person.Groups != nil || g.Person.Attributes["okta.group.add"] != "backend-eng" {
			t.Errorf("fallback group event %+v", g.Person)
		}
	})
}

func TestOktaCatchUp(t *testing.T) {
	sim := seedOktaAPI(t)
	// Three events in the outage window: two acted on, one ignored type; the
	// filter sent to Okta drops the session event before it reaches us.
	sim.AddLogEvent(`{"uuid":"c1","published":"2026-11-28T09:00:00.000Z","eventType":"user.lifecycle.deactivate","outcome":{"result":"SUCCESS"},"target":[{"id":"00ugone","type":"User","alternateId":"gone@acme.com"}]}`)
	sim.AddLogEvent(`{"uuid":"c0","published":"2026-11-28T08:00:00.000Z","eventType":"user.session.start","outcome":{"result":"SUCCESS"},"actor":{"id":"00ux","type":"User"}}`)
	sim.AddLogEvent(`{"uuid":"c2","published":"2026-11-28T09:30:00.000Z","eventType":"user.lifecycle.suspend","outcome":{"result":"SUCCESS"},"target":[{"id":"00upause","type":"User","alternateId":"pause@acme.com"}]}`)
	sim.AddLogEvent(`{"uuid":"c3","published":"2026-11-20T09:30:00.000Z","eventType":"user.lifecycle.suspend","outcome":{"result":"SUCCESS"},"target":[{"id":"00uold","type":"User","alternateId":"old@acme.com"}]}`)
	o := mustOkta(t, sources.Config{APIURL: sim.URL + "/api/v1/", APIToken: sim.Token, Now: func() time.Time { return oktaNow }})
	got, err := o.CatchUp(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got.Events {
		ids = append(ids, e.ID+"="+string(e.Type))
	}
	if want := []string{"c1=leaver", "c2=suspend"}; !slices.Equal(ids, want) {
		t.Fatalf("catch-up %v, want %v", ids, want)
	}
	if _, err := mustOkta(t, sources.Config{}).CatchUp(context.Background(), oktaNow); err == nil {
		t.Error("catch-up without API access: no error")
	}
}

// FuzzOkta: no body or header panics Parse or Handshake, and every event it
// returns survives the wire and carries an id and an address.
func FuzzOkta(f *testing.F) {
	for _, name := range []string{"deactivate.json", "session-start.json", "preview-null-target.json", "batch.json"} {
		f.Add([]byte(oktaFixture(f, name)), oktaSecret)
	}
	f.Add([]byte(`{"data":{"events":[{"eventType":"group.user_membership.add","target":[{"type":"User","id":"1","alternateId":"a@b.c"},{"type":"UserGroup"}]}]}}`), oktaSecret)
	f.Add([]byte(`{"data":{"events":null}}`), "")
	o := mustOkta(f, sources.Config{})
	f.Fuzz(func(t *testing.T, body []byte, auth string) {
		r := oktaPost(string(body), "")
		r.Header["Authorization"] = []string{auth}
		r.Header["X-Okta-Verification-Challenge"] = []string{string(body)}
		got, err := o.Parse(r, body, oktaNow)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		for _, e := range got.Events {
			if e.ID == "" || e.Person.Email == "" || !e.Type.Valid() {
				t.Fatalf("bad event %+v", e)
			}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := events.Unmarshal(b); err != nil {
				t.Fatalf("event does not decode: %v", err)
			}
		}
		g := httptest.NewRequest(http.MethodGet, "/hooks/okta", nil)
		g.Header = r.Header
		o.Handshake(httptest.NewRecorder(), g, nil)
	})
}
