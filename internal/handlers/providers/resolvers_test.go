package resolve_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	registry "github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

type provider struct {
	name  string
	start func(testing.TB) *resolvetest.Server
	// ids gives each seeded person's id in this provider's id format.
	idOf func(n string) string
}

var providers = []provider{
	{"bamboohr", resolvetest.NewBambooHR, func(n string) string { return "40" + n }},
	{"hibob", resolvetest.NewHiBob, func(n string) string { return "33328838840177132" + n }},
	{"gusto", resolvetest.NewGusto, func(n string) string { return "bcfc9744-0ab3-4ef3-ab0d-e728255d65" + n }},
	{"personio", resolvetest.NewPersonio, func(n string) string { return "42" + n }},
	{"deel", resolvetest.NewDeel, func(n string) string { return "7b1e0000-0000-4000-8000-0000000000" + n }},
	{"rippling", resolvetest.NewRippling, func(n string) string { return "656992816f26d6caea0007" + n }},
}

func seed(s *resolvetest.Server, idOf func(string) string) {
	s.Add(resolvetest.Person{ID: idOf("01"), Email: "jane@acme.com", FirstName: "Jane", LastName: "Doe",
		Department: "Payments", Title: "Engineer", ManagerEmail: "lead@acme.com", State: resolvetest.Active, ContractID: "c-01"})
	s.Add(resolvetest.Person{ID: idOf("02"), Email: "leaver@acme.com", FirstName: "Lee", LastName: "Ver",
		Department: "Sales", Title: "AE", State: resolvetest.Terminated, TerminationDate: "2026-11-27", ContractID: "c-02"})
	s.Add(resolvetest.Person{ID: idOf("03"), Email: "away@acme.com", FirstName: "A", LastName: "Way",
		Department: "Ops", Title: "SRE", State: resolvetest.Leave})
	s.Add(resolvetest.Person{ID: idOf("04"), Email: "soon@acme.com", FirstName: "S", LastName: "Oon",
		Department: "Ops", Title: "SRE", State: resolvetest.NotStarted})
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
	for _, pv := range providers {
		t.Run(pv.name, func(t *testing.T) {
			s := pv.start(t)
			seed(s, pv.idOf)
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

func TestBambooHRAsksForJSONAndFields(t *testing.T) {
	s := resolvetest.NewBambooHR(t)
	seed(s, providers[0].idOf)
	r := mustResolver(t, "bamboohr", s, s.Token)
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
	if _, err := resolve.NewBambooHR(resolve.Config{Token: "k"}); !errors.Is(err, resolve.ErrNotConfigured) {
		t.Fatalf("BambooHR without URL: %v", err)
	}
}

func TestHiBobReadsByPOST(t *testing.T) {
	s := resolvetest.NewHiBob(t)
	seed(s, providers[1].idOf)
	r := mustResolver(t, "hibob", s, s.Token)
	p, err := r.Resolve(context.Background(), "hibob", providers[1].idOf("01"))
	if err != nil {
		t.Fatal(err)
	}
	if p.ManagerEmail != "lead@acme.com" {
		t.Fatalf("manager %q", p.ManagerEmail)
	}
	if req := s.Requests()[0]; req.Method != http.MethodPost || req.Path != "/v1/people/"+providers[1].idOf("01") {
		t.Fatalf("request %+v", req)
	}
	if _, err := resolve.NewHiBob(resolve.Config{Token: "no-colon"}); !errors.Is(err, resolve.ErrNotConfigured) {
		t.Fatalf("token without service user id: %v", err)
	}
}

func TestPersonioTokenCachedAndRenewed(t *testing.T) {
	s := resolvetest.NewPersonio(t)
	seed(s, providers[3].idOf)
	r := mustResolver(t, "personio", s, s.Token)
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

func TestDeelContractReference(t *testing.T) {
	s := resolvetest.NewDeel(t)
	seed(s, providers[4].idOf)
	r := mustResolver(t, "deel", s, s.Token)
	ctx := context.Background()
	p, err := r.Resolve(ctx, "deel", resolve.DeelContractPrefix+"c-02")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != providers[4].idOf("02") || p.Status != events.Terminated || p.Email != "leaver@acme.com" || p.Attributes["contract_id"] != "c-02" {
		t.Fatalf("person %+v", p)
	}
	if _, err := r.Resolve(ctx, "deel", resolve.DeelContractPrefix+"c-404"); !errors.Is(err, resolve.ErrUnresolvable) {
		t.Fatalf("unknown contract: %v", err)
	}
	if _, err := r.Resolve(ctx, "deel", resolve.DeelContractPrefix+"../x"); !errors.Is(err, resolve.ErrUnresolvable) {
		t.Fatalf("bad contract id: %v", err)
	}
}

func TestRipplingNeverReturnsThePersonalEmail(t *testing.T) {
	s := resolvetest.NewRippling(t)
	s.Add(resolvetest.Person{ID: "r1", State: resolvetest.Active, FirstName: "No", LastName: "Work"})
	r := mustResolver(t, "rippling", s, s.Token)
	p, err := r.Resolve(context.Background(), "rippling", "r1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Email != "" {
		t.Fatalf("email %q", p.Email)
	}
}

func TestBySource(t *testing.T) {
	s := resolvetest.NewGusto(t)
	seed(s, providers[2].idOf)
	b := resolve.BySource{"gusto": mustResolver(t, "gusto", s, s.Token)}
	if _, err := b.Resolve(context.Background(), "gusto", providers[2].idOf("01")); err != nil {
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
	if _, err := resolve.NewGusto(resolve.Config{BaseURL: "ftp://x"}); err == nil {
		t.Fatal("ftp URL accepted")
	}
}
