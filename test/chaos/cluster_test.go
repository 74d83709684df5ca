package chaos

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// TestChaosClusterNodeLoss runs the receiver and two workers against a
// three-node NATS cluster with R3 streams and KV buckets
// (JML_STREAM_REPLICAS=3), SIGKILLs the node leading JML_EVENTS a third of
// the way through the deliveries and leaves it dead: every event answered 202
// must still be in the stream and processed, and the end state and mutation
// bounds must hold as in the lifecycle run. Sentry calls fail 20% of the time
// as there.
func TestChaosClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short")
	}
	// Not parallel: a three-node cluster's replicated meta layer, starved of
	// CPU by the 10,000-event run beside it on two cores, could not create
	// the R3 buckets for minutes (the workers' retries outlasted 150 s). Run
	// alone, it shows node loss rather than CPU starvation.
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("JML_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d", seed)
	began := time.Now()
	const n = 1000
	sc := newScenario(seed, n, "c")
	r := newRig(t, rigOptions{NATSNodes: 3, Workers: 2, RateLimit: lifecycleRateLimit, Seed: &sc.Seed, FaultSeed: seed})
	r.injectFaults(sentryFaults()...)
	snd, err := newSender(r.hookURL+"/hooks/generic", genericSecret)
	if err != nil {
		t.Fatal(err)
	}
	_, js := r.js()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	const rate = 30.0
	killAt := time.Duration(float64(len(sc.Sends)) / rate / 3 * float64(time.Second))
	var killed string
	var leaderBefore, leaderAfter string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-time.After(killAt):
		case <-ctx.Done():
			return
		}
		victim := rand.IntN(len(r.nats))
		ictx, icancel := context.WithTimeout(ctx, 5*time.Second)
		if st, err := js.Stream(ictx, events.StreamEvents); err == nil {
			if si, err := st.Info(ictx); err == nil && si.Cluster != nil {
				leaderBefore = si.Cluster.Leader
				for i := range r.nats {
					if r.nats[i].name == si.Cluster.Leader {
						victim = i
					}
				}
			}
		}
		icancel()
		killed = r.nats[victim].name
		r.nats[victim].kill()
		t.Logf("SIGKILLed NATS node %s (the JML_EVENTS leader was %q) at %s", killed, leaderBefore, time.Now().Format("15:04:05.000"))
	}()
	sendStart := time.Now()
	if err := snd.sendAll(ctx, sc.Sends, 16, rate); err != nil {
		t.Fatalf("sending: %v", err)
	}
	wg.Wait()
	sendTook := time.Since(sendStart)
	prog := finish(ctx, t, r, sc.Sends, snd, js)
	processed := time.Since(sendStart)
	if st, err := js.Stream(ctx, events.StreamEvents); err == nil {
		if si, err := st.Info(ctx); err == nil && si.Cluster != nil {
			leaderAfter = si.Cluster.Leader
			if si.Config.Replicas != 3 {
				t.Errorf("JML_EVENTS has %d replicas, want 3", si.Config.Replicas)
			}
		}
	}
	people, muts, worst := verify(t, r, sc)
	st, _ := r.stats()
	result := "PASS"
	if t.Failed() {
		result = "FAIL"
	}
	t.Logf("chaos: %s cluster nodes=3 replicas=3 killed=%s (JML_EVENTS leader before=%s after=%s) events=%d sends=%d people=%d workers=2 seed=%d | "+
		"sent in %s (%.0f/s offered), all processed %s after the first send, total %s | 202 accepted=%d duplicates=%d sender_retries=%d (503s=%d) | "+
		"stream msgs=%d dlq=%d | sandbox requests=%d faults_injected=%d mutations=%d max mutations/bound=%s",
		result, killed, leaderBefore, leaderAfter, sc.Events, len(sc.Sends), people, seed,
		sendTook.Round(time.Millisecond), rate, processed.Round(time.Millisecond), time.Since(began).Round(time.Second),
		snd.accepted.Load(), snd.duplicates.Load(), snd.retries.Load(), snd.status503.Load(), prog.LastSeq, prog.DLQ,
		st.TotalRequests, st.FaultsInjected, muts, worst)
}
