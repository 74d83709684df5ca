package sourcestest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/receiver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

// WantEvent is one event a fixture expects.
type WantEvent struct {
	Type     events.Type   `json:"type"`
	Status   events.Status `json:"status"`
	PersonID string        `json:"person_id"`
	Email    string        `json:"email"`
	EventID  string        `json:"event_id"` // "sha256" = the body hash
}

// Fixture is one payload of a provider's fixture file and what parsing it gives.
type Fixture struct {
	Name        string      `json:"name"`
	Origin      string      `json:"origin"`
	ContentType string      `json:"content_type"`
	Body        string      `json:"body"`
	Want        []WantEvent `json:"want"`
	Ignored     int         `json:"ignored"`
}

// Vector is one signature test vector.
type Vector struct {
	Name            string `json:"name"`
	ComputedLocally bool   `json:"computed_locally"`
	Key             string `json:"key"`
	Timestamp       string `json:"timestamp"`
	Body            string `json:"body"`
	Signature       string `json:"signature"`
}

// FixtureFile is testdata/webhooks/<name>.json.
type FixtureFile struct {
	Source           string    `json:"source"`
	Note             string    `json:"note"`
	Vectors          []Vector  `json:"vectors"`
	Fixtures         []Fixture `json:"fixtures"`
	Pings            []string  `json:"pings"`
	VerificationBody string    `json:"verification_body"`
	Token            string    `json:"token"`
}

// LoadFixtures reads testdata/webhooks/<name>.
func LoadFixtures(tb testing.TB, name string) FixtureFile {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "testdata", "webhooks", name))
	if err != nil {
		tb.Fatal(err)
	}
	var f FixtureFile
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	if f.Source == "" || len(f.Fixtures) == 0 {
		tb.Fatalf("%s: no source note or no fixtures", name)
	}
	return f
}

// NewRequest is a POST /hooks/x with body and headers.
func NewRequest(body string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/x", strings.NewReader(body))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

// SHA256ID is the event id of a provider that gives none: the body's sha256.
func SHA256ID(body string) string {
	s := sha256.Sum256([]byte(body))
	return "sha256:" + hex.EncodeToString(s[:])
}

// CheckWant compares a parse result with a fixture's expectations.
func CheckWant(t *testing.T, name string, body string, got sources.Parsed, f Fixture) {
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
			if ev.ID != SHA256ID(body) {
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

// CheckInvariants holds for every accepted request of every HR source.
func CheckInvariants(tb testing.TB, name string, body []byte, p sources.Parsed, now time.Time) {
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

// CheckErr asserts the error class: nil, ErrUnauthorized or events.ErrInvalid.
func CheckErr(tb testing.TB, err, want error) {
	tb.Helper()
	switch {
	case want == nil && err != nil:
		tb.Fatalf("err = %v, want nil", err)
	case want != nil && !errors.Is(err, want):
		tb.Fatalf("err = %v, want %v", err, want)
	}
}

// Publisher records what the receiver publishes.
type Publisher struct {
	mu     sync.Mutex
	Events []events.Event
	seen   map[string]bool
}

// Publish records e once per message id, as JetStream deduplicates.
func (p *Publisher) Publish(_ context.Context, e events.Event) (events.PublishResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	dup := p.seen[e.MsgID()]
	p.seen[e.MsgID()] = true
	if !dup {
		p.Events = append(p.Events, e)
	}
	return events.PublishResult{Sequence: uint64(len(p.Events)), Duplicate: dup}, nil
}

// ServeHook sends one request to src through the real receiver, publishing to pub.
func ServeHook(tb testing.TB, src sources.Source, pub *Publisher, method, body string, headers map[string]string) *httptest.ResponseRecorder {
	tb.Helper()
	rcv, err := receiver.New(receiver.Options{Publisher: pub, Sources: []sources.Source{src}})
	if err != nil {
		tb.Fatal(err)
	}
	r := httptest.NewRequest(method, "/hooks/"+src.Name(), strings.NewReader(body))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	rcv.ServeHTTP(rec, r)
	return rec
}

// SanitizeHeader keeps fuzzed header values settable on a request.
func SanitizeHeader(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// HMACSHA256Hex is the lowercase hex HMAC-SHA256 of msg keyed with key (the
// signature scheme of BambooHR, with the timestamp appended, Gusto and Deel).
func HMACSHA256Hex(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}
