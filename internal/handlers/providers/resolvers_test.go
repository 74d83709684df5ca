package providers_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	registry "github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/bamboohr/bamboohrtest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/deel/deeltest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/gusto"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/gusto/gustotest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/hibob/hibobtest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio/personiotest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling/ripplingtest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

// fake is the test side of a registry entry with an API reader: the
// provider's simulator (in providers/<name>/<name>test, since a simulator
// imports testing, which the registry, built into every binary, must not).
type fake struct {
	name  string
	start func(testing.TB) *resolvetest.Server
	// idOf gives each seeded person's id in this provider's id format.
	idOf func(n string) string
}

var fakes = []fake{
	{"bamboohr", bamboohrtest.New, bamboohrtest.ID},
	{"hibob", hibobtest.New, hibobtest.ID},
	{"gusto", gustotest.New, gustotest.ID},
	{"personio", personiotest.New, personiotest.ID},
	{"deel", deeltest.New, deeltest.ID},
	{"rippling", ripplingtest.New, ripplingtest.ID},
}

func mustResolver(t *testing.T, name string, s *resolvetest.Server, token string) resolve.Resolver {
	t.Helper()
	r, err := registry.NewResolver(name, resolve.Config{BaseURL: s.URL, Token: token, HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolvers(t *testing.T) {
	for _, pv := range fakes {
		t.Run(pv.name, func(t *testing.T) {
			s := pv.start(t)
			resolvetest.Seed(s, pv.idOf)
			r := mustResolver(t, pv.name, s, s.Token)
			ctx := context.Background()

			t.Run("OK active", func(t *testing.T) {
				p, err := r.Resolve(ctx, pv.name, pv.idOf("01"))
				if err != nil {
					t.Fatal(err)
				}
				if p.ID != pv.idOf("01") || p.Email != "jane@acme.com" || p.Status != events.Active || p.Name != "Jane Doe" || p.Title != "Engineer" {
					t.Fatalf("person %+v", p)
				}
				// Personio returns department ids, not names.
				if pv.name != "personio" && p.Department != "Payments" {
					t.Fatalf("department %q", p.Department)
				}
			})
			t.Run("OK terminated", func(t *testing.T) {
				p, err := r.Resolve(ctx, pv.name, pv.idOf("02"))
				if err != nil {
					t.Fatal(err)
				}
				if p.Status != events.Terminated || p.Email != "leaver@acme.com" {
					t.Fatalf("person %+v", p)
				}
			})
			t.Run("OK leave", func(t *testing.T) {
				p, err := r.Resolve(ctx, pv.name, pv.idOf("03"))
				if err != nil {
					t.Fatal(err)
				}
				// Gusto, Deel and Rippling have no leave state: still active there.
				want := map[string]events.Status{"bamboohr": events.Suspended, "hibob": events.Suspended, "personio": events.Suspended}[pv.name]
				if want == "" {
					want = events.Active
				}
				if p.Status != want {
					t.Fatalf("status %q, want %q", p.Status, want)
				}
			})
			t.Run("OK not started", func(t *testing.T) {
				p, err := r.Resolve(ctx, pv.name, pv.idOf("04"))
				if err != nil {
					t.Fatal(err)
				}
				// BambooHR has no pre-start state: the record is Active.
				if pv.name != "bamboohr" && p.Status != "" {
					t.Fatalf("status %q for a hire that has not started", p.Status)
				}
			})
			t.Run("ErrUnresolvable 404", func(t *testing.T) {
				if _, err := r.Resolve(ctx, pv.name, pv.idOf("99")); !errors.Is(err, resolve.ErrUnresolvable) {
					t.Fatalf("err = %v", err)
				}
			})
			t.Run("ErrUnresolvable bad id, no request", func(t *testing.T) {
				before := len(s.Requests())
				for _, id := range []string{"", "../01", "a/b", "x?y", "%2e%2e", ".."} {
					if _, err := r.Resolve(ctx, pv.name, id); !errors.Is(err, resolve.ErrUnresolvable) {
						t.Fatalf("%q: err = %v", id, err)
					}
				}
				if n := len(s.Requests()) - before; n != 0 {
					t.Fatalf("%d requests for invalid ids", n)
				}
			})
			t.Run("ErrUnauthorized", func(t *testing.T) {
				bad := "wrong-token"
				if pv.name == "hibob" || pv.name == "personio" {
					bad = "wrong:credentials"
				}
				rb := mustResolver(t, pv.name, s, bad)
				if _, err := rb.Resolve(ctx, pv.name, pv.idOf("01")); !errors.Is(err, resolve.ErrUnauthorized) {
					t.Fatalf("err = %v", err)
				}
			})
			t.Run("StatusError 503 is temporary", func(t *testing.T) {
				s.FailNext(http.StatusServiceUnavailable)
				_, err := r.Resolve(ctx, pv.name, pv.idOf("01"))
				var se *resolve.StatusError
				if !errors.As(err, &se) || !se.Temporary() || errors.Is(err, resolve.ErrUnresolvable) {
					t.Fatalf("err = %v", err)
				}
			})
			t.Run("ctx cancelled", func(t *testing.T) {
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				if _, err := r.Resolve(cctx, pv.name, pv.idOf("01")); !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v", err)
				}
			})
		})
	}
}

func TestBySource(t *testing.T) {
	s := gustotest.New(t)
	resolvetest.Seed(s, gustotest.ID)
	b := resolve.BySource{"gusto": mustResolver(t, "gusto", s, s.Token)}
	if _, err := b.Resolve(context.Background(), "gusto", gustotest.ID("01")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resolve(context.Background(), "okta", "x"); !errors.Is(err, resolve.ErrNotConfigured) {
		t.Fatalf("err = %v", err)
	}
	if _, err := registry.NewResolver("workday", resolve.Config{}); err == nil {
		t.Fatal("unknown source accepted")
	}
	if _, err := registry.NewResolver("okta", resolve.Config{BaseURL: s.URL}); err == nil {
		t.Fatal("okta has no API reader (its API feeds the catch-up), yet one was built")
	}
	if _, err := gusto.NewResolver(resolve.Config{BaseURL: "ftp://x"}); err == nil {
		t.Fatal("ftp URL accepted")
	}
}
