package personio_test

import (
	"context"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio/personiotest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

func mustResolver(t *testing.T, s *resolvetest.Server, token string) resolve.Resolver {
	t.Helper()
	r, err := personio.NewResolver(resolve.Config{BaseURL: s.URL, Token: token, HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPersonioTokenCachedAndRenewed(t *testing.T) {
	s := personiotest.New(t)
	resolvetest.Seed(s, personiotest.ID)
	r := mustResolver(t, s, s.Token)
	ctx := context.Background()
	for range 2 {
		if _, err := r.Resolve(ctx, "personio", "4201"); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n int) {
		for _, q := range s.Requests() {
			if q.Path == "/v2/auth/token" {
				n++
			}
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d token requests for two resolves", n)
	}
	s.ExpireTokens()
	p, err := r.Resolve(ctx, "personio", "4202")
	if err != nil {
		t.Fatalf("after token expiry: %v", err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d token requests, want a renewal", n)
	}
	// The latest employment decides, not the old inactive one.
	if p.Status != events.Terminated || p.Attributes["termination_date"] != "2026-11-27" {
		t.Fatalf("person %+v", p)
	}
	q, _ := r.Resolve(ctx, "personio", "4201")
	if q.Status != events.Active || q.Attributes["department_id"] != "dept-payments" {
		t.Fatalf("person %+v", q)
	}
}
