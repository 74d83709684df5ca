package personio_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources/sourcestest"
)

func mustPersonio(tb testing.TB, secrets ...string) *personio.Source {
	tb.Helper()
	s, err := personio.NewSource(sources.Config{Secrets: secrets})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestPersonioFixtures(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "personio.json")
	s := mustPersonio(t, "old-token", f.Token)
	now := time.Date(2026, 2, 1, 0, 0, 1, 0, time.UTC)
	for _, fx := range f.Fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			p, err := s.Parse(sourcestest.NewRequest(fx.Body, map[string]string{"Authorization": f.Token}), []byte(fx.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "personio", []byte(fx.Body), p, now)
			sourcestest.CheckWant(t, "personio", fx.Body, p, fx)
			for _, ev := range p.Events {
				if ev.ID != sourcestest.SHA256ID(fx.Body) {
					t.Fatalf("id %s is not the body hash", ev.ID)
				}
			}
		})
	}
}

func TestPersonioAuth(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "personio.json")
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
			_, err := s.Parse(sourcestest.NewRequest(body, map[string]string{"Authorization": tc.header}), []byte(body), now)
			sourcestest.CheckErr(t, err, tc.want)
		})
	}
	t.Run("ErrMalformed", func(t *testing.T) {
		s := mustPersonio(t, "tok")
		for _, b := range []string{`[]`, `{"event_name":"person.deleted"}`, `{"event_name":"person.deleted","payload":{}}`, `{"payload":{"id":"1"}}`, `{`} {
			_, err := s.Parse(sourcestest.NewRequest(b, map[string]string{"Authorization": "tok"}), []byte(b), now)
			sourcestest.CheckErr(t, err, events.ErrInvalid)
		}
	})
}

func FuzzPersonio(f *testing.F) {
	ff := sourcestest.LoadFixtures(f, "personio.json")
	for _, fx := range ff.Fixtures {
		f.Add([]byte(fx.Body), ff.Token)
	}
	f.Add([]byte(`{"event_name":"employment.terminated","payload":{"person":"x"}}`), ff.Token)
	s := mustPersonio(f, ff.Token)
	f.Fuzz(func(t *testing.T, body []byte, auth string) {
		now := time.Unix(1_769_884_920, 0)
		p, err := s.Parse(sourcestest.NewRequest(string(body), map[string]string{"Authorization": sourcestest.SanitizeHeader(auth)}), body, now)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		sourcestest.CheckInvariants(t, "personio", body, p, now)
	})
}
