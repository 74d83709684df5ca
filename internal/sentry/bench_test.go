package sentry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// inMemory serves requests with the sandbox handler, without a socket.
type inMemory struct{ h http.Handler }

func (m inMemory) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// BenchmarkLeaverCalls measures the client's cost of a leaver's two calls (find
// by email, delete) against the in-memory sandbox.
func BenchmarkLeaverCalls(b *testing.B) {
	sb := sentrytest.New(sentrytest.Options{RateLimit: -1, Token: "sandbox",
		Seed: &sentrytest.Seed{
			Org:      sentrytest.SeedOrg{Slug: "acme"},
			Members:  []sentrytest.SeedMember{{Email: "jml-bot@acme.test", OrgRole: "manager"}},
			Generate: &sentrytest.SeedGenerate{Members: 1000, Teams: 10},
		}})
	c, err := sentry.New(sentry.Config{BaseURL: "http://sandbox.invalid", Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: &safetytest.Gate{},
		HTTPClient: &http.Client{Transport: inMemory{sb}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := sentry.WithPriority(context.Background(), sentry.PriorityLeaver)
	ms := sb.Members()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m := ms[1+i%(len(ms)-1)]
		found, err := c.FindMembersByEmail(ctx, m.Email)
		if err != nil {
			b.Fatal(err)
		}
		if len(found) == 1 {
			if err := c.DeleteMember(ctx, found[0].ID); err != nil {
				b.Fatal(err)
			}
		}
	}
}
