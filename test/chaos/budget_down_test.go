package chaos

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// TestChaosFleetBudgetRedisDown: with Redis stopped, the fleet budget cannot
// coordinate, so each of three worker processes paces alone — at 1/3 of
// Sentry's limit, because each knows from the replica registry (JetStream)
// that three replicas are live. All three read the whole organization at
// once (an access review each); Sentry's limit of 6 requests per second per
// (token, URL pattern, method) is never exceeded once an endpoint's first
// answer told the workers the limit, and no 429 follows. Each alone at the
// full limit would send 18 per second.
func TestChaosFleetBudgetRedisDown(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short")
	}
	t.Parallel()
	const limit = 6
	seed := sentrytest.DemoSeed()
	for i := range 900 {
		seed.Members = append(seed.Members, sentrytest.SeedMember{Email: fmt.Sprintf("bulk%04d@acme.test", i), OrgRole: "member"})
	}
	r := newRig(t, rigOptions{Workers: 3, RateLimit: limit, Seed: seed})
	// Every worker must count three live replicas before Redis goes.
	for i := range 3 {
		deadline := time.Now().Add(60 * time.Second)
		for {
			var v struct {
				Replicas []map[string]any `json:"replicas"`
			}
			if err := r.adminDo(i, http.MethodGet, "/v1/replicas", &v); err == nil && len(v.Replicas) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker %d does not see three live replicas", i)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(3 * time.Second) // a heartbeat's count refreshes every 2 s
	r.redis.stop()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	rows := make([]int, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v struct {
				Members []map[string]any `json:"members"`
			}
			errs[i] = r.adminDo(i, http.MethodGet, "/v1/access/review", &v)
			rows[i] = len(v.Members)
		}()
	}
	wg.Wait()
	end := time.Now()
	r.redis.start()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("access review on worker %d with Redis down: %v", i, err)
		}
		if rows[i] < 900 {
			t.Fatalf("worker %d reviewed %d members, want the whole org", i, rows[i])
		}
	}
	log, err := r.requestLog()
	if err != nil {
		t.Fatal(err)
	}
	// The first second an endpoint is asked is the learning window: the
	// limit is not known before Sentry's first answer.
	first := map[string]int64{}
	perWindow := map[string]int{}
	worst, worstKey, limited, total := 0, "", 0, 0
	for _, q := range log {
		if q.Time.Before(start) || q.Time.After(end) {
			continue
		}
		total++
		ep := q.Method + " " + shortPattern(q.Pattern)
		if f, ok := first[ep]; !ok || q.Time.Unix() < f {
			first[ep] = q.Time.Unix()
		}
	}
	for _, q := range log {
		if q.Time.Before(start) || q.Time.After(end) {
			continue
		}
		ep := q.Method + " " + shortPattern(q.Pattern)
		sec := q.Time.Unix()
		if sec == first[ep] {
			continue
		}
		if q.Status == http.StatusTooManyRequests {
			limited++
		}
		k := fmt.Sprintf("%s @%d", ep, sec)
		perWindow[k]++
		if perWindow[k] > worst {
			worst, worstKey = perWindow[k], k
		}
	}
	if worst > limit {
		t.Errorf("%d requests in one second (%s) with Redis down; Sentry's limit is %d: the workers did not pace at 1/3 each", worst, worstKey, limit)
	}
	if limited > 0 {
		t.Errorf("the sandbox answered %d requests with 429 after each endpoint's first second", limited)
	}
	t.Logf("chaos: fleet budget with Redis down: 3 workers reviewed %d members each in %s, %d requests, busiest second %d (%s), limit %d, 429s after learning %d",
		rows[0], end.Sub(start).Round(time.Millisecond), total, worst, worstKey, limit, limited)
}
