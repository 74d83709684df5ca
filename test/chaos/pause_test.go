package chaos

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestChaosPauseMidRun pauses the fleet while leavers, joiners and movers are
// being converged: `jml pause` answers once both workers confirm, and from
// that answer until the resume the sandbox's request log shows no mutating
// request, while the receiver keeps accepting events. After the resume
// everything converges to the desired state, nothing lost or done twice.
func TestChaosPauseMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short")
	}
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("JML_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	sc := newScenario(seed, 500, "pz")
	r := newRig(t, rigOptions{Workers: 2, RateLimit: 40, Latency: 15 * time.Millisecond, Seed: &sc.Seed, FaultSeed: seed})
	snd, err := newSender(r.hookURL+"/hooks/generic", genericSecret)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- snd.sendAll(ctx, sc.Sends, 8, 25) }()

	mutations := func() int {
		log, err := r.requestLog()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, q := range log {
			if q.Method != http.MethodGet {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(90 * time.Second)
	// Both workers must be live (heartbeating) replicas before the pause, or
	// the pause rightly answers for the one it knows.
	for {
		var reps struct {
			Replicas []json.RawMessage `json:"replicas"`
		}
		if err := r.adminDo(0, http.MethodGet, "/v1/replicas", &reps); err == nil && len(reps.Replicas) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("two live replicas never showed within 90 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for mutations() < 20 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 20 mutations within 90 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var res struct {
		Complete     bool     `json:"complete"`
		Acknowledged []string `json:"acknowledged"`
		Missing      []string `json:"missing"`
	}
	if err := r.adminDo(0, http.MethodPost, "/v1/pause?wait=20s", &res); err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	if !res.Complete || len(res.Acknowledged) != 2 || len(res.Missing) != 0 {
		t.Fatalf("pause answer: %+v", res)
	}
	acceptedAtPause := snd.accepted.Load()
	time.Sleep(5 * time.Second)
	log, err := r.requestLog()
	if err != nil {
		t.Fatal(err)
	}
	before, after := 0, 0
	for _, q := range log {
		if q.Method == http.MethodGet {
			continue
		}
		end := q.Time.Add(time.Duration(q.Seconds * float64(time.Second)))
		if q.Time.After(answered) || end.After(answered) {
			after++
			if after <= 5 {
				t.Errorf("mutation after the pause answered: %s %s at %s (answer at %s)", q.Method, q.Path, q.Time.Format(time.RFC3339Nano), answered.Format(time.RFC3339Nano))
			}
		} else {
			before++
		}
	}
	if after > 0 {
		t.Fatalf("%d mutating requests reached Sentry after jml pause answered", after)
	}
	acceptedDuringPause := snd.accepted.Load() - acceptedAtPause
	if acceptedDuringPause == 0 {
		t.Error("no event was accepted while paused: ingestion must go on")
	}
	var resumed map[string]any
	if err := r.adminDo(1, http.MethodPost, "/v1/resume", &resumed); err != nil || resumed["paused"] != false {
		t.Fatalf("resume: %v %v", resumed, err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("sending: %v", err)
	}
	_, js := r.js()
	prog := finish(ctx, t, r, sc.Sends, snd, js)
	people, muts, worst := verify(t, r, sc)
	t.Logf("chaos: pause mid-run: %d mutations before the pause, none in the 5 s after its answer (%d events accepted meanwhile); "+
		"then stream msgs=%d dlq=%d people=%d mutations=%d max mutations/bound=%s",
		before, acceptedDuringPause, prog.LastSeq, prog.DLQ, people, muts, worst)
}
