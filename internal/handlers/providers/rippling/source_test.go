package rippling_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources/sourcestest"
)

func mustRippling(tb testing.TB, secrets ...string) *rippling.Source {
	tb.Helper()
	s, err := rippling.NewSource(sources.Config{Secrets: secrets})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestRipplingFixtures(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "rippling.json")
	s := mustRippling(t, f.Token)
	now := time.Date(2026, 2, 1, 0, 0, 1, 0, time.UTC)
	for _, fx := range f.Fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			r := sourcestest.NewRequest(fx.Body, map[string]string{"Authorization": "Bearer " + f.Token, "Content-Type": "application/x-www-form-urlencoded"})
			p, err := s.Parse(r, []byte(fx.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "rippling", []byte(fx.Body), p, now)
			sourcestest.CheckWant(t, "rippling", fx.Body, p, fx)
			for _, ev := range p.Events {
				if ev.Person.Email != "" {
					t.Fatalf("company_primary_email taken for the person's: %s", ev.Person.Email)
				}
				if !ev.OccurredAt.Equal(now) {
					t.Fatalf("OccurredAt = %v, want receipt time (Rippling sends none)", ev.OccurredAt)
				}
			}
		})
	}
	t.Run("OK JSON body", func(t *testing.T) {
		body := `{"event_name":"employee.terminated","company_id":"c","id":"e-1"}`
		p, err := s.Parse(sourcestest.NewRequest(body, map[string]string{"Authorization": "Bearer " + f.Token}), []byte(body), now)
		sourcestest.CheckErr(t, err, nil)
		if len(p.Events) != 1 || p.Events[0].Person.ID != "e-1" || p.Events[0].Type != events.Leaver {
			t.Fatalf("%+v", p)
		}
	})
}

func TestRipplingRejects(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "rippling.json")
	s := mustRippling(t, f.Token)
	body := f.Fixtures[0].Body
	now := time.Now()
	for _, tc := range []struct {
		name, body, auth string
		want             error
	}{
		{"ErrNoAuth", body, "", sources.ErrUnauthorized},
		{"ErrWrongToken", body, "Bearer nope", sources.ErrUnauthorized},
		{"ErrBasicNotSupported", body, "Basic " + f.Token, sources.ErrUnauthorized},
		{"ErrNoEventName", "id=1&company_id=2", "Bearer " + f.Token, events.ErrInvalid},
		{"ErrNoID", "event_name=employee.terminated", "Bearer " + f.Token, events.ErrInvalid},
		{"ErrBadForm", "event_name=%zz", "Bearer " + f.Token, events.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Parse(sourcestest.NewRequest(tc.body, map[string]string{"Authorization": tc.auth}), []byte(tc.body), now)
			sourcestest.CheckErr(t, err, tc.want)
		})
	}
}

func FuzzRippling(f *testing.F) {
	ff := sourcestest.LoadFixtures(f, "rippling.json")
	for _, fx := range ff.Fixtures {
		f.Add([]byte(fx.Body), "Bearer "+ff.Token)
	}
	f.Add([]byte(`{"event_name":"employee.deleted","id":12}`), ff.Token)
	s := mustRippling(f, ff.Token)
	f.Fuzz(func(t *testing.T, body []byte, auth string) {
		now := time.Unix(1_769_884_920, 0)
		p, err := s.Parse(sourcestest.NewRequest(string(body), map[string]string{"Authorization": sourcestest.SanitizeHeader(auth)}), body, now)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		sourcestest.CheckInvariants(t, "rippling", body, p, now)
	})
}
