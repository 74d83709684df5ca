package hibob_test

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/hibob"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources/sourcestest"
)

const bobKey = "test-bob-secret"

func bobSign(key, body string) string {
	m := hmac.New(sha512.New, []byte(key))
	m.Write([]byte(body))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func mustHiBob(tb testing.TB, secrets ...string) *hibob.Source {
	tb.Helper()
	s, err := hibob.NewSource(sources.Config{Secrets: secrets})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestHiBobVectors(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "hibob.json")
	now := time.Date(2026, 1, 31, 18, 43, 0, 0, time.UTC)
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			if got := bobSign(v.Key, v.Body); got != v.Signature {
				t.Fatalf("test signer disagrees with the vector: %s", got)
			}
			s := mustHiBob(t, "rotated-out", v.Key)
			p, err := s.Parse(sourcestest.NewRequest(v.Body, map[string]string{"Bob-Signature": v.Signature}), []byte(v.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "hibob", []byte(v.Body), p, now)
			ev := p.Events[0]
			if ev.Type != events.Leaver || ev.Person.Status != events.Terminated || ev.Person.ID != "3332883884017713238" {
				t.Fatalf("event %+v", ev)
			}
			// triggeredAt has no zone: read as UTC.
			if want := time.Date(2026, 1, 31, 18, 42, 0, 0, time.UTC); !ev.OccurredAt.Equal(want) {
				t.Fatalf("OccurredAt = %v", ev.OccurredAt)
			}
		})
	}
}

func TestHiBobFixtures(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "hibob.json")
	now := time.Date(2026, 1, 31, 18, 43, 0, 0, time.UTC)
	s := mustHiBob(t, bobKey)
	for _, fx := range f.Fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			p, err := s.Parse(sourcestest.NewRequest(fx.Body, map[string]string{"Bob-Signature": bobSign(bobKey, fx.Body)}), []byte(fx.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "hibob", []byte(fx.Body), p, now)
			sourcestest.CheckWant(t, "hibob", fx.Body, p, fx)
		})
	}
}

func TestHiBobRejects(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "hibob.json")
	v := f.Vectors[0]
	s := mustHiBob(t, v.Key)
	now := time.Now()
	unpadded := strings.TrimRight(v.Signature, "=")
	for _, tc := range []struct {
		name, body, sig string
		want            error
	}{
		{"OK", v.Body, v.Signature, nil},
		{"OK unpadded base64", v.Body, unpadded, nil},
		{"ErrTampered", v.Body + " ", v.Signature, sources.ErrUnauthorized},
		{"ErrMissing", v.Body, "", sources.ErrUnauthorized},
		{"ErrHexInsteadOfBase64", v.Body, strings.Repeat("ab", 64), sources.ErrUnauthorized},
		{"ErrSHA256Length", v.Body, base64.StdEncoding.EncodeToString(make([]byte, 32)), sources.ErrUnauthorized},
		{"ErrWrongKey", v.Body, bobSign("x", v.Body), sources.ErrUnauthorized},
		{"ErrSignedPingIsNotAnEvent", "Ping test", bobSign(v.Key, "Ping test"), events.ErrInvalid},
		{"ErrNoType", `{"data":{"employeeId":"1"}}`, bobSign(v.Key, `{"data":{"employeeId":"1"}}`), events.ErrInvalid},
		{"ErrNoEmployee", `{"type":"employee.left","data":{}}`, bobSign(v.Key, `{"type":"employee.left","data":{}}`), events.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Parse(sourcestest.NewRequest(tc.body, map[string]string{"Bob-Signature": tc.sig}), []byte(tc.body), now)
			sourcestest.CheckErr(t, err, tc.want)
		})
	}
}

func TestHiBobPing(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "hibob.json")
	s := mustHiBob(t, bobKey)
	for _, body := range append(f.Pings, " Ping test\n") {
		t.Run(body, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if !s.Handshake(rec, sourcestest.NewRequest(body, nil), []byte(body)) {
				t.Fatal("ping not handled")
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
		})
	}
	t.Run("events are not pings", func(t *testing.T) {
		body := f.Vectors[0].Body
		if s.Handshake(httptest.NewRecorder(), sourcestest.NewRequest(body, nil), []byte(body)) {
			t.Fatal("event taken for a ping")
		}
	})
	t.Run("GET is not a ping", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/hooks/hibob", nil)
		if s.Handshake(httptest.NewRecorder(), r, nil) {
			t.Fatal("GET handled")
		}
	})
}

func FuzzHiBob(f *testing.F) {
	ff := sourcestest.LoadFixtures(f, "hibob.json")
	for _, fx := range ff.Fixtures {
		f.Add([]byte(fx.Body), true)
	}
	for _, p := range ff.Pings {
		f.Add([]byte(p), false)
	}
	f.Add([]byte(`{"type":"employee.left","data":{"employeeId":{"x":1}}}`), true)
	s := mustHiBob(f, bobKey)
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		now := time.Unix(1_769_884_920, 0)
		sig := "AAAA"
		if sign {
			sig = bobSign(bobKey, string(body))
		}
		_ = s.Handshake(httptest.NewRecorder(), sourcestest.NewRequest(string(body), nil), body)
		p, err := s.Parse(sourcestest.NewRequest(string(body), map[string]string{"Bob-Signature": sig}), body, now)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !sign {
			t.Fatal("accepted without a valid signature")
		}
		sourcestest.CheckInvariants(t, "hibob", body, p, now)
	})
}

func TestHiBobThroughReceiver(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "hibob.json")
	v := f.Vectors[0]
	pub := &sourcestest.Publisher{}
	s := mustHiBob(t, v.Key)
	for _, ping := range f.Pings {
		if rec := sourcestest.ServeHook(t, s, pub, http.MethodPost, ping, nil); rec.Code != http.StatusOK {
			t.Fatalf("ping %q: %d %s", ping, rec.Code, rec.Body)
		}
	}
	if rec := sourcestest.ServeHook(t, s, pub, http.MethodPost, v.Body, map[string]string{"Bob-Signature": "bad"}); rec.Code != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", rec.Code)
	}
	rec := sourcestest.ServeHook(t, s, pub, http.MethodPost, v.Body, map[string]string{"Bob-Signature": v.Signature})
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"accepted":1`) {
		t.Fatalf("event: %d %s", rec.Code, rec.Body)
	}
	unknown := `{"companyId":1,"type":"goal.created","data":{}}`
	rec = sourcestest.ServeHook(t, s, pub, http.MethodPost, unknown, map[string]string{"Bob-Signature": bobSign(v.Key, unknown)})
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"ignored":1`) {
		t.Fatalf("unknown type: %d %s", rec.Code, rec.Body)
	}
	if len(pub.Events) != 1 || pub.Events[0].Subject() != "jml.events.hibob.leaver" {
		t.Fatalf("published %+v", pub.Events)
	}
}
