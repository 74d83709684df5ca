package rippling_test

import (
	"context"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling/ripplingtest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

func mustResolver(t *testing.T, s *resolvetest.Server, token string) resolve.Resolver {
	t.Helper()
	r, err := rippling.NewResolver(resolve.Config{BaseURL: s.URL, Token: token, HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRipplingNeverReturnsThePersonalEmail(t *testing.T) {
	s := ripplingtest.New(t)
	s.Add(resolvetest.Person{ID: "r1", State: resolvetest.Active, FirstName: "No", LastName: "Work"})
	r := mustResolver(t, s, s.Token)
	p, err := r.Resolve(context.Background(), "rippling", "r1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Email != "" {
		t.Fatalf("email %q", p.Email)
	}
}
