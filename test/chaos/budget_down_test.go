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
// answers told the workers the limit, and no 429 follows. Each alone at the
// full limit would send 18 per second.
func TestChaosFleetBudgetRedisDown(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short")
	}
	// Not parallel: the per-second accounting below is measured at the
	// sandbox, where a request granted just before a second ends can arrive
	// in the next one; alone, the machine keeps that delay within the budget's
	// guard.
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
	// Each worker paces alone from limits it learned from Sentry's answers:
	// a first review, with Redis up, lets every worker see every endpoint.
	review := func() (rows [3]int, errs [3]error) {
		var wg sync.WaitGroup
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
		return rows, errs
	}
	if _, errs := review(); errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("access reviews with Redis up: %v", errs)
	}
	r.redis.stop()
	time.Sleep(time.Second)
	start := time.Now()
	rows, errs := review()
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
	perWindow := map[string]int{}
	worst, worstKey, limited, total := 0, "", 0, 0
	for _, q := range log {
		if q.Time.Before(start) || q.Time.After(end) {
			continue
		}
		total++
		if q.Status == http.StatusTooManyRequests {
			limited++
		}
		k := fmt.Sprintf("%s %s @%d", q.Method, shortPattern(q.Pattern), q.Time.Unix())
		perWindow[k]++
		if perWindow[k] > worst {
			worst, worstKey = perWindow[k], k
		}
	}
	// One request over the limit in a second is a grant made at the end of
	// the previous second that arrived late (the budget counts it there, the
	// sandbox here); each worker at the full limit would be three times over,
	// most of its requests refused.
	if worst > limit+1 {
		t.Errorf("%d requests in one second (%s) with Redis down; Sentry's limit is %d: the workers did not pace at 1/3 each", worst, worstKey, limit)
	}
	if limited*20 > total {
		t.Errorf("the sandbox answered %d of %d requests with 429 while Redis was down", limited, total)
	}
	t.Logf("chaos: fleet budget with Redis down: 3 workers reviewed %d members each in %s, %d requests, busiest second %d (%s), limit %d, 429s %d",
		rows[0], end.Sub(start).Round(time.Millisecond), total, worst, worstKey, limit, limited)
}
