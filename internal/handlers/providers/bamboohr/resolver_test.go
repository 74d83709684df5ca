package bamboohr_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/bamboohr"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/bamboohr/bamboohrtest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

func mustResolver(t *testing.T, s *resolvetest.Server, token string) resolve.Resolver {
	t.Helper()
	r, err := bamboohr.NewResolver(resolve.Config{BaseURL: s.URL, Token: token, HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBambooHRAsksForJSONAndFields(t *testing.T) {
	s := bamboohrtest.New(t)
	resolvetest.Seed(s, bamboohrtest.ID)
	r := mustResolver(t, s, s.Token)
	if _, err := r.Resolve(context.Background(), "bamboohr", "4001"); err != nil {
		t.Fatal(err) // the simulator answers XML without Accept: application/json
	}
	req := s.Requests()[0]
	if req.Path != "/api/gateway.php/acme/v1/employees/4001" || req.Method != http.MethodGet {
		t.Fatalf("request %+v", req)
	}
	if want := "fields=firstName%2ClastName%2CdisplayName%2CworkEmail%2Cstatus%2CemploymentHistoryStatus%2Cdepartment%2Cdivision%2CjobTitle%2CterminationDate"; req.Query != want {
		t.Fatalf("query %s", req.Query)
	}
	if _, err := bamboohr.NewResolver(resolve.Config{Token: "k"}); !errors.Is(err, resolve.ErrNotConfigured) {
		t.Fatalf("BambooHR without URL: %v", err)
	}
}
