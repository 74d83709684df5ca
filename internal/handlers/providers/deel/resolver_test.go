package deel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/deel"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/deel/deeltest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

func mustResolver(t *testing.T, s *resolvetest.Server, token string) resolve.Resolver {
	t.Helper()
	r, err := deel.NewResolver(resolve.Config{BaseURL: s.URL, Token: token, HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDeelContractReference(t *testing.T) {
	s := deeltest.New(t)
	resolvetest.Seed(s, deeltest.ID)
	r := mustResolver(t, s, s.Token)
	ctx := context.Background()
	p, err := r.Resolve(ctx, "deel", deel.ContractPrefix+"c-02")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != deeltest.ID("02") || p.Status != events.Terminated || p.Email != "leaver@acme.com" || p.Attributes["contract_id"] != "c-02" {
		t.Fatalf("person %+v", p)
	}
	if _, err := r.Resolve(ctx, "deel", deel.ContractPrefix+"c-404"); !errors.Is(err, resolve.ErrUnresolvable) {
		t.Fatalf("unknown contract: %v", err)
	}
	if _, err := r.Resolve(ctx, "deel", deel.ContractPrefix+"../x"); !errors.Is(err, resolve.ErrUnresolvable) {
		t.Fatalf("bad contract id: %v", err)
	}
}
