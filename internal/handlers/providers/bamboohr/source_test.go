package sources_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

// ---- Test helpers shared by the HR source tests.

type wantEvent struct {
	Type     events.Type   `json:"type"`
	Status   events.Status `json:"status"`
	PersonID string        `json:"person_id"`
	Email    string        `json:"email"`
	EventID  string        `json:"event_id"` // "sha256" = the body hash
}

type fixture struct {
	Name        string      `json:"name"`
	Origin      string      `json:"origin"`
	ContentType string      `json:"content_type"`
	Body        string      `json:"body"`
	Want        []wantEvent `json:"want"`
	Ignored     int         `json:"ignored"`
}

type vector struct {
	Name            string `json:"name"`
	ComputedLocally bool   `json:"computed_locally"`
	Key             string `json:"key"`
	Timestamp       string `json:"timestamp"`
	Body            string `json:"body"`
	Signature       string `json:"signature"`
}

type fixtureFile struct {
	Source           string    `json:"source"`
	Note             string    `json:"note"`
	Vectors          []vector  `json:"vectors"`
	Fixtures         []fixture `json:"fixtures"`
	Pings            []string  `json:"pings"`
	VerificationBody string    `json:"verification_body"`
	Token            string    `json:"token"`
}

func loadFixtures(tb testing.TB, name string) fixtureFile {
	tb.Helper()
	b, err := os.ReadFile("../../../testdata/webhooks/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	var f fixtureFile
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	if f.Source == "" || len(f.Fixtures) == 0 {
		tb.Fatalf("%s: no source note or no fixtures", name)
	}
	return f
}

func newRequest(body string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/x", strings.NewReader(body))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func sha256ID(body string) string {
	s := sha256.Sum256([]byte(body))
	return "sha256:" + hex.EncodeToString(s[:])
}

// checkWant compares a parse result with a fixture's expectations.
func checkWant(t *testing.T, name string, body string, got sources.Parsed, f fixture) {
	t.Helper()
	if got.Ignored != f.Ignored {
		t.Errorf("Ignored = %d, want %d", got.Ignored, f.Ignored)
	}
	if len(got.Events) != len(f.Want) {
		t.Fatalf("%d events, want %d: %+v", len(got.Events), len(f.Want), got.Events)
	}
	for i, w := range f.Want {
		ev := got.Events[i]
		if ev.Type != w.Type || ev.Person.Status != w.Status || ev.Person.ID != w.PersonID || ev.Person.Email != w.Email {
			t.Errorf("event %d = {type %s status %q id %q email %q}, want {%s %q %q %q}", i,
				ev.Type, ev.Person.Status, ev.Person.ID, ev.Person.Email, w.Type, w.Status, w.PersonID, w.Email)
		}
		switch w.EventID {
		case "":
		case "sha256":
			if ev.ID != sha256ID(body) {
				t.Errorf("event id = %s, want the body hash", ev.ID)
			}
		default:
			if ev.ID != w.EventID {
				t.Errorf("event id = %s, want %s", ev.ID, w.EventID)
			}
		}
		if ev.Source != name {
			t.Errorf("source = %s, want %s", ev.Source, name)
		}
	}
}

// checkInvariants holds for every accepted request of every HR source.
func checkInvariants(tb testing.TB, name string, body []byte, p sources.Parsed, now time.Time) {
	tb.Helper()
	if p.Ignored < 0 {
		tb.Fatalf("negative Ignored")
	}
	ids := map[string]bool{}
	for _, ev := range p.Events {
		if ev.ID == "" || len(ev.ID) > 300 {
			tb.Fatalf("bad event id %q", ev.ID)
		}
		if ids[ev.ID] {
			tb.Fatalf("duplicate event id %q in one request", ev.ID)
		}
		ids[ev.ID] = true
		if ev.Source != name {
			tb.Fatalf("source %q", ev.Source)
		}
		if !ev.Type.Valid() {
			tb.Fatalf("invalid type %q", ev.Type)
		}
		if ev.Person.ID == "" && ev.Person.Email == "" {
			tb.Fatalf("person without id or email")
		}
		if len(ev.Person.ID) > 256 {
			tb.Fatalf("person id too long")
		}
		if ev.Person.Status != "" && !ev.Person.Status.Valid() {
			tb.Fatalf("invalid status %q", ev.Person.Status)
		}
		implied := map[events.Type]events.Status{events.Leaver: events.Terminated, events.Suspend: events.Suspended, events.Joiner: events.Active, events.Rehire: events.Active}
		if want, ok := implied[ev.Type]; ok && ev.Person.Status != "" && ev.Person.Status != want {
			tb.Fatalf("type %s contradicts status %s", ev.Type, ev.Person.Status)
		}
		if ev.OccurredAt.IsZero() || !ev.ReceivedAt.Equal(now.UTC()) {
			tb.Fatalf("times: occurred %v received %v", ev.OccurredAt, ev.ReceivedAt)
		}
		// The event must survive the wire codec the worker uses.
		b, err := events.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := events.Unmarshal(b); err != nil {
			tb.Fatalf("published event does not decode: %v", err)
		}
	}
}

// checkErr asserts the error class: nil, ErrUnauthorized or events.ErrInvalid.
func checkErr(tb testing.TB, err, want error) {
	tb.Helper()
	switch {
	case want == nil && err != nil:
		tb.Fatalf("err = %v, want nil", err)
	case want != nil && !errors.Is(err, want):
		tb.Fatalf("err = %v, want %v", err, want)
	}
}

// ---- BambooHR

const bambooKey = "test-private-key"

func bambooSign(key, body, ts string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body + ts))
	return hex.EncodeToString(m.Sum(nil))
}

func mustBambooHR(tb testing.TB, secrets ...string) *sources.BambooHR {
	tb.Helper()
	s, err := sources.NewBambooHR(sources.Config{Secrets: secrets})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func bambooRequest(body, ts, sig, contentType string) *http.Request {
	h := map[string]string{"X-BambooHR-Timestamp": ts, "X-BambooHR-Signature": sig}
	if contentType != "" {
		h["Content-Type"] = contentType
	}
	return newRequest(body, h)
}

func TestBambooHRVectors(t *testing.T) {
	f := loadFixtures(t, "bamboohr.json")
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			if got := bambooSign(v.Key, v.Body, v.Timestamp); got != v.Signature {
				t.Fatalf("test signer disagrees with the vector: %s", got)
			}
			sec, _ := strconv.ParseInt(v.Timestamp, 10, 64)
			now := time.Unix(sec, 0).Add(30 * time.Second)
			s := mustBambooHR(t, "other-key", v.Key)
			p, err := s.Parse(bambooRequest(v.Body, v.Timestamp, v.Signature, "application/json"), []byte(v.Body), now)
			checkErr(t, err, nil)
			checkInvariants(t, "bamboohr", []byte(v.Body), p, now)
			if len(p.Events) != 1 || p.Events[0].Person.ID != "67890" || p.Events[0].ID != sha256ID(v.Body) {
				t.Fatalf("parsed %+v", p)
			}
			want := time.Date(2026, 1, 31, 18, 42, 0, 0, time.UTC)
			if !p.Events[0].OccurredAt.Equal(want) {
				t.Fatalf("OccurredAt = %v, want %v (the body's timestamp)", p.Events[0].OccurredAt, want)
			}
		})
	}
}

func TestBambooHRFixtures(t *testing.T) {
	f := loadFixtures(t, "bamboohr.json")
	now := time.Unix(1_769_884_920, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	s := mustBambooHR(t, bambooKey)
	for _, fx := range f.Fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			p, err := s.Parse(bambooRequest(fx.Body, ts, bambooSign(bambooKey, fx.Body, ts), fx.ContentType), []byte(fx.Body), now)
			checkErr(t, err, nil)
			checkInvariants(t, "bamboohr", []byte(fx.Body), p, now)
			checkWant(t, "bamboohr", fx.Body, p, fx)
		})
	}
}

func TestBambooHRRejects(t *testing.T) {
	f := loadFixtures(t, "bamboohr.json")
	v := f.Vectors[0]
	sec, _ := strconv.ParseInt(v.Timestamp, 10, 64)
	now := time.Unix(sec, 0)
	s := mustBambooHR(t, v.Key)
	iso := now.UTC().Format(time.RFC3339)
	cases := []struct {
		name          string
		body, ts, sig string
		now           time.Time
		want          error
	}{
		{"OK", v.Body, v.Timestamp, v.Signature, now, nil},
		{"OK upper-case hex", v.Body, v.Timestamp, strings.ToUpper(v.Signature), now, nil},
		{"OK ISO timestamp", v.Body, iso, bambooSign(v.Key, v.Body, iso), now, nil},
		{"OK 5 min old", v.Body, v.Timestamp, v.Signature, now.Add(5 * time.Minute), nil},
		{"ErrTooOld", v.Body, v.Timestamp, v.Signature, now.Add(5*time.Minute + time.Second), sources.ErrUnauthorized},
		{"ErrTooNew", v.Body, v.Timestamp, v.Signature, now.Add(-5*time.Minute - time.Second), sources.ErrUnauthorized},
		{"ErrTamperedBody", v.Body + " ", v.Timestamp, v.Signature, now, sources.ErrUnauthorized},
		{"ErrTimestampNotSigned", v.Body, strconv.FormatInt(sec+1, 10), v.Signature, now, sources.ErrUnauthorized},
		{"ErrMissingSignature", v.Body, v.Timestamp, "", now, sources.ErrUnauthorized},
		{"ErrMissingTimestamp", v.Body, "", v.Signature, now, sources.ErrUnauthorized},
		{"ErrTruncatedSignature", v.Body, v.Timestamp, v.Signature[:20], now, sources.ErrUnauthorized},
		{"ErrWrongKey", v.Body, v.Timestamp, bambooSign("nope", v.Body, v.Timestamp), now, sources.ErrUnauthorized},
		{"ErrUnparseableTimestamp", v.Body, "yesterday", bambooSign(v.Key, v.Body, "yesterday"), now, sources.ErrUnauthorized},
		{"ErrNotJSONOrForm", "%%%", v.Timestamp, bambooSign(v.Key, "%%%", v.Timestamp), now, events.ErrInvalid},
		{"ErrNeitherStyle", `{"foo":1}`, v.Timestamp, bambooSign(v.Key, `{"foo":1}`, v.Timestamp), now, events.ErrInvalid},
		{"ErrNoEmployeeID", `{"type":"employee.deleted","data":{}}`, v.Timestamp, bambooSign(v.Key, `{"type":"employee.deleted","data":{}}`, v.Timestamp), now, events.ErrInvalid},
		{"ErrTrailingData", v.Body + "{}", v.Timestamp, bambooSign(v.Key, v.Body+"{}", v.Timestamp), now, events.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Parse(bambooRequest(tc.body, tc.ts, tc.sig, ""), []byte(tc.body), tc.now)
			checkErr(t, err, tc.want)
			if tc.want == nil && err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewBambooHRNeedsSecret(t *testing.T) {
	if _, err := sources.NewBambooHR(sources.Config{}); err == nil {
		t.Fatal("no secret accepted")
	}
	if _, err := sources.NewBambooHR(sources.Config{Secrets: []string{"  "}}); err == nil {
		t.Fatal("blank secret accepted")
	}
}

func FuzzBambooHR(f *testing.F) {
	ff := loadFixtures(f, "bamboohr.json")
	for _, fx := range ff.Fixtures {
		f.Add([]byte(fx.Body), "1769884920", fx.ContentType, true)
	}
	f.Add([]byte("employees[1][action]=Deleted"), "2026-01-31T18:42:00Z", "", true)
	f.Add([]byte(`{"employees":[{"id":1e400}]}`), "1769884920", "", false)
	s := mustBambooHR(f, bambooKey)
	f.Fuzz(func(t *testing.T, body []byte, ts, contentType string, sign bool) {
		now := time.Unix(1_769_884_920, 0)
		sig := "00"
		if sign {
			sig = bambooSign(bambooKey, string(body), ts)
		}
		r := bambooRequest(string(body), ts, sig, contentType)
		p, err := s.Parse(r, body, now)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !sign {
			t.Fatal("accepted without a valid signature")
		}
		checkInvariants(t, "bamboohr", body, p, now)
		if bytes.Equal(body, nil) && len(p.Events) > 0 {
			t.Fatal("events from an empty body")
		}
	})
}

// TestBambooHRWithoutAPIWarnsAtStart: enabled without API access, the source
// says at start that joiners cannot be provisioned (issue 16).
func TestBambooHRWithoutAPIWarnsAtStart(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if _, err := sources.NewBambooHR(sources.Config{Secrets: []string{"k"}, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "joiners cannot be provisioned") {
		t.Fatalf("no warning at start: %q", buf.String())
	}
	buf.Reset()
	if _, err := sources.NewBambooHR(sources.Config{Secrets: []string{"k"}, APIURL: "https://api.bamboohr.com/api/gateway.php/acme", APIToken: "t", Logger: log}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "cannot be provisioned") {
		t.Fatalf("warned with the API configured: %q", buf.String())
	}
}
