package reconcile_test

import (
	"context"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// BenchmarkNoChangeReconcile reconciles a generated org of 10,000 members and
// 200 teams with an in-process sandbox (the 100k figure comes from
// `jml bench reconcile`, with the sandbox in its own process).
func BenchmarkNoChangeReconcile(b *testing.B) {
	seed := &sentrytest.Seed{Org: sentrytest.SeedOrg{Slug: "acme"},
		Members:  []sentrytest.SeedMember{{Email: "jml-bot@acme.test", OrgRole: "manager"}},
		Generate: &sentrytest.SeedGenerate{Members: 10000, Teams: 200, TeamsPerMember: 2, PendingEvery: 200, IdPEvery: 10, TeamAdminEvery: 20}}
	h := mustHarness(b, seed, "")
	h.everyoneActive(b)
	b.ResetTimer()
	for b.Loop() {
		h.sb.ResetStats()
		sum, err := h.rec.Run(context.Background(), reconcile.RunOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if c := sum.Counts; c.Remove+c.Invite+c.Update != 0 {
			b.Fatalf("changes in a no-change run: %+v", c)
		}
		st := h.sb.Stats()
		b.ReportMetric(float64(st.TotalRequests)/float64(st.ReconcileMinimumCalls), "calls/min")
	}
}
