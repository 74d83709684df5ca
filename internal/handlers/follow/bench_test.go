package follow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/handlers/follow"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// BenchmarkIdlePoll: following the log costs at most one API call per poll
// when nothing happens (target ≤ 1).
func BenchmarkIdlePoll(b *testing.B) {
	r := newRig(b, sentrytest.Options{RateLimit: 40})
	f := r.follower(nil)
	poll(b, f) // sets the cursor
	r.joinTeam("maya.manager@acme.test", "jane.doe@acme.test", "security")
	poll(b, f)
	before := r.auditCalls()
	b.ResetTimer()
	for b.Loop() {
		if res := poll(b, f); res.Requests != 0 || res.Gap != "" {
			b.Fatalf("idle poll %+v", res)
		}
	}
	b.StopTimer()
	calls := float64(r.auditCalls()-before) / float64(b.N)
	b.ReportMetric(calls, "calls/poll")
	if calls > 1 {
		b.Fatalf("%.2f API calls per idle poll, target ≤ 1", calls)
	}
}

// BenchmarkBurst1000: a burst of 1,000 audit entries is drained in one poll
// within Sentry's rate limit (the sandbox's default 40 requests/s per
// token, URL pattern and method) without a 429.
func BenchmarkBurst1000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		seed := sentrytest.DemoSeed()
		for i := range 1000 {
			seed.OrgAuthTokens = append(seed.OrgAuthTokens, sentrytest.SeedOrgAuthToken{Name: fmt.Sprintf("burst-%04d", i),
				CreatedBy: "jane.doe@acme.test", Created: time.Now().Add(-time.Duration(1000-i) * time.Millisecond)})
		}
		r := newRig(b, sentrytest.Options{RateLimit: 40, Seed: seed})
		if _, err := r.cursor.Save(context.Background(), follow.Cursor{LastAt: time.Now().Add(-time.Hour)}, 0); err != nil {
			b.Fatal(err)
		}
		f := r.follower(nil)
		b.StartTimer()
		start := time.Now()
		res := poll(b, f)
		took := time.Since(start)
		b.StopTimer()
		st := r.sb.Stats()
		if res.Read < 1000 || res.Gap != "" || st.RateLimited != 0 {
			b.Fatalf("poll %+v, 429s %d: want ≥ 1,000 entries read, no gap, no 429", res, st.RateLimited)
		}
		b.ReportMetric(float64(res.Read), "entries")
		b.ReportMetric(float64(r.auditCalls()), "calls")
		b.ReportMetric(float64(st.RateLimited), "429s")
		b.ReportMetric(took.Seconds()*1000, "drain_ms")
		b.StartTimer()
	}
}
