package hibob_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/hibob"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/hibob/hibobtest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

func mustResolver(t *testing.T, s *resolvetest.Server, token string) resolve.Resolver {
	t.Helper()
	r, err := hibob.NewResolver(resolve.Config{BaseURL: s.URL, Token: token, HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestHiBobReadsByPOST(t *testing.T) {
	s := hibobtest.New(t)
	resolvetest.Seed(s, hibobtest.ID)
	r := mustResolver(t, s, s.Token)
	p, err := r.Resolve(context.Background(), "hibob", hibobtest.ID("01"))
	if err != nil {
		t.Fatal(err)
	}
	if p.ManagerEmail != "lead@acme.com" {
		t.Fatalf("manager %q", p.ManagerEmail)
	}
	if req := s.Requests()[0]; req.Method != http.MethodPost || req.Path != "/v1/people/"+hibobtest.ID("01") {
		t.Fatalf("request %+v", req)
	}
	if _, err := hibob.NewResolver(resolve.Config{Token: "no-colon"}); !errors.Is(err, resolve.ErrNotConfigured) {
		t.Fatalf("token without service user id: %v", err)
	}
}
