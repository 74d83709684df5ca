package main

import (
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// TestBenchBareClientBaseline: the floor phase of `jml bench revoke` makes
// exactly the worker's two calls per leaver (detail, removal) against a
// sandbox enforcing Sentry's limit, meets no 429, removes every leaver and
// reports a CPU figure.
func TestBenchBareClientBaseline(t *testing.T) {
	seed := sentrytest.DemoSeed()
	seed.Generate = &sentrytest.SeedGenerate{Members: 30, Teams: 2}
	srv := sentrytest.NewServer(t, sentrytest.Options{Seed: seed, Token: "sandbox"}) // 40/s per pattern and method
	const from, n = 11, 20
	res, err := benchBareClient(t.Context(), srv.URL, "sandbox", from, n)
	if err != nil {
		t.Fatal(err)
	}
	if res.CallsPerEvent != 2 || res.RateLimited != 0 {
		t.Fatalf("calls per leaver %.2f, 429s %d; want 2 and 0", res.CallsPerEvent, res.RateLimited)
	}
	if res.CPUPerEvent <= 0 {
		t.Fatalf("CPU per leaver %.1f µs", res.CPUPerEvent)
	}
	removed := srv.Stats().Mutations["member.remove"]
	if len(removed) != n {
		t.Fatalf("%d members removed, want %d: %v", len(removed), n, removed)
	}
	if removed["user000011@acme.test"] != 1 || removed["user000030@acme.test"] != 1 {
		t.Fatalf("removed %v; want user000011…user000030", removed)
	}
	t.Logf("bare client: %.0f µs CPU per leaver", res.CPUPerEvent)
}
