package sources_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

func mustPersonio(tb testing.TB, secrets ...string) *sources.Personio {
	tb.Helper()
	s, err := sources.NewPersonio(sources.Config{Secrets: secrets})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestPersonioFixtures(t *testing.T) {
	f := loadFixtures(t, "personio.json")
	s := mustPersonio(t, "old-token", f.Token)
	now := time.Date(2026, 2, 1, 0, 0, 1, 0, time.UTC)
	for _, fx := range f.Fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			p, err := s.Parse(newRequest(fx.Body, map[string]string{"Authorization": f.Token}), []byte(fx.Body), now)
			checkErr(t, err, nil)
			checkInvariants(t, "personio", []byte(fx.Body), p, now)
			checkWant(t, "personio", fx.Body, p, fx)
			for _, ev := range p.Events {
				if ev.ID != sha256ID(fx.Body) {
					t.Fatalf("id %s is not the body hash", ev.ID)
				}
			}
		})
	}
}

func TestPersonioAuth(t *testing.T) {
	f := loadFixtures(t, "personio.json")
	body := f.Fixtures[0].Body
	now := time.Now()
	for _, tc := range []struct {
		name, secret, header string
		want                 error
	}{
		{"OK exact", "tok", "tok", nil},
		{"OK bearer configured in Personio", "tok", "Bearer tok", nil},
		{"OK secret with prefix", "Bearer tok", "Bearer tok", nil},
		{"ErrPrefixNotInSecret", "Bearer tok", "tok", sources.ErrUnauthorized},
		{"ErrWrong", "tok", "tok2", sources.ErrUnauthorized},
		{"ErrPrefixOfToken", "tok", "to", sources.ErrUnauthorized},
		{"ErrMissing", "tok", "", sources.ErrUnauthorized},
		{"ErrBasic", "tok", "Basic tok", sources.ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustPersonio(t, tc.secret)
			_, err := s.Parse(newRequest(body, map[string]string{"Authorization": tc.header}), []byte(body), now)
			checkErr(t, err, tc.want)
		})
	}
	t.Run("ErrMalformed", func(t *testing.T) {
		s := mustPersonio(t, "tok")
		for _, b := range []string{`[]`, `{"event_name":"person.deleted"}`, `{"event_name":"person.deleted","payload":{}}`, `{"payload":{"id":"1"}}`, `{`} {
			_, err := s.Parse(newRequest(b, map[string]string{"Authorization": "tok"}), []byte(b), now)
			checkErr(t, err, events.ErrInvalid)
		}
	})
}

func FuzzPersonio(f *testing.F) {
	ff := loadFixtures(f, "personio.json")
	for _, fx := range ff.Fixtures {
		f.Add([]byte(fx.Body), ff.Token)
	}
	f.Add([]byte(`{"event_name":"employment.terminated","payload":{"person":"x"}}`), ff.Token)
	s := mustPersonio(f, ff.Token)
	f.Fuzz(func(t *testing.T, body []byte, auth string) {
		now := time.Unix(1_769_884_920, 0)
		p, err := s.Parse(newRequest(string(body), map[string]string{"Authorization": sanitizeHeader(auth)}), body, now)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		checkInvariants(t, "personio", body, p, now)
	})
}

// sanitizeHeader keeps fuzzed header values settable on a request.
func sanitizeHeader(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}
