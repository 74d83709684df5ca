package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

func redisURL() string {
	if u := os.Getenv("JML_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

type replica struct {
	owner  string
	w      *app.Worker
	cancel context.CancelFunc
	done   chan error
}

// Three worker replicas share one coordination store (Redis) and one NATS:
// the scheduled reconcile (every second here) runs once per tick, and killing
// the replica running a tick hands the next ticks to the others.
func TestScheduledJobsRunOncePerTickAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	sb := sentrytest.NewServer(t, sentrytest.Options{RateLimit: -1, Latency: 40 * time.Millisecond})
	srv, _, js := natstest.Run(t)
	prefix := fmt.Sprintf("jmltest:%d:", time.Now().UnixNano())
	pol, err := policy.Parse("p.yaml", []byte(`reconcile: {schedule: "* * * * * *"}`))
	if err != nil {
		t.Fatal(err)
	}
	tel, err := telemetry.New(ctx, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := func(i int) *replica {
		owner := fmt.Sprintf("replica-%d", i)
		nc, coord, client, gate := replicaDeps(t, srv.ClientURL(), sb.URL, prefix, owner)
		w, err := app.NewWorker(ctx, app.WorkerOptions{NC: nc, Coord: coord, Sentry: client, Telemetry: tel, Gate: gate,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Owner: owner, Policy: func() policy.Policy { return pol },
			Target: "sandbox", IndexInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.UseReconcile(app.ReconcileOptions{RunLeaseTTL: 2 * time.Second}); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &replica{owner: owner, w: w, cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- w.Run(rctx) }()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	replicas := []*replica{start(1), start(2), start(3)}
	records, err := jsstate.Open(ctx, js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	type runInfo struct {
		owner string
		tick  int64
	}
	runs := func() []runInfo {
		var out []runInfo
		for run, err := range records.Runs.List(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			pl, err := reconcile.DecodePlan(run.Plan)
			if err != nil {
				t.Fatal(err)
			}
			if pl.Trigger != "schedule" {
				continue
			}
			out = append(out, runInfo{owner: pl.Owner, tick: run.StartedAt.Round(time.Second).Unix()})
		}
		return out
	}
	// Let a few ticks pass.
	deadline := time.Now().Add(15 * time.Second)
	for len(runs()) < 4 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	// Kill the replica that is running a tick right now.
	var leader *replica
	for leader == nil && time.Now().Before(deadline) {
		for _, r := range replicas {
			rec, err := r.w.Reconciler()
			if err != nil {
				t.Fatal(err)
			}
			if p := rec.Progress(); p.Running {
				leader = r
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if leader == nil {
		t.Fatal("no replica was seen running a tick")
	}
	leader.cancel()
	<-leader.done
	leader.done <- nil // for the cleanup
	killedAt := time.Now()
	before := len(runs())
	deadline = time.Now().Add(15 * time.Second)
	var after []runInfo
	for time.Now().Before(deadline) {
		after = nil
		for _, r := range runs() {
			if r.owner != leader.owner && r.tick > killedAt.Unix() {
				after = append(after, r)
			}
		}
		if len(after) >= 2 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(after) < 2 {
		t.Fatalf("after killing %s no other replica took the next ticks (runs before: %d, all: %+v)", leader.owner, before, runs())
	}
	seen := map[int64]string{}
	owners := map[string]bool{}
	for _, r := range runs() {
		if prev, ok := seen[r.tick]; ok {
			t.Fatalf("tick %d ran twice (by %s and %s)", r.tick, prev, r.owner)
		}
		seen[r.tick] = r.owner
		owners[r.owner] = true
	}
	t.Logf("%d ticks run by %v; killed %s", len(seen), owners, leader.owner)
}

// A policy reload (SIGHUP) that changes reconcile.schedule takes effect
// without a restart: a worker started on a yearly schedule runs ticks every
// second once the policy says so, and stops when it says yearly again.
func TestReconcileScheduleFollowsPolicyReload(t *testing.T) {
	ctx := context.Background()
	sb := sentrytest.NewServer(t, sentrytest.Options{RateLimit: -1})
	srv, _, js := natstest.Run(t)
	parse := func(src string) *policy.Policy {
		p, err := policy.Parse("p.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	var current atomic.Pointer[policy.Policy]
	current.Store(parse(`reconcile: {schedule: "0 0 1 1 *"}`))
	tel, err := telemetry.New(ctx, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nc, coord, client, gate := replicaDeps(t, srv.ClientURL(), sb.URL, fmt.Sprintf("jmltest:%d:", time.Now().UnixNano()), "replica-1")
	w, err := app.NewWorker(ctx, app.WorkerOptions{NC: nc, Coord: coord, Sentry: client, Telemetry: tel, Gate: gate,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Owner: "replica-1", Policy: func() policy.Policy { return *current.Load() },
		Target: "sandbox", IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	records, err := jsstate.Open(ctx, js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	scheduled := func() int {
		n := 0
		for run, err := range records.Runs.List(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if pl, err := reconcile.DecodePlan(run.Plan); err == nil && pl.Trigger == "schedule" {
				n++
			}
		}
		return n
	}
	time.Sleep(2 * time.Second)
	if n := scheduled(); n != 0 {
		t.Fatalf("%d scheduled runs on a yearly schedule", n)
	}
	current.Store(parse(`reconcile: {schedule: "* * * * * *"}`))
	deadline := time.Now().Add(15 * time.Second)
	for scheduled() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after the reload to every second: %d scheduled runs in 15 s", scheduled())
		}
		time.Sleep(200 * time.Millisecond)
	}
	current.Store(parse(`reconcile: {schedule: "0 0 1 1 *"}`))
	time.Sleep(7 * time.Second) // the schedule is re-read every 5 s
	settled := scheduled()
	time.Sleep(3 * time.Second)
	if n := scheduled(); n != settled {
		t.Fatalf("back on a yearly schedule, runs went on: %d → %d", settled, n)
	}
}

// replicaDeps opens what one worker replica connects to: its own NATS
// connection, the shared Redis under prefix, and a Sentry client of the
// sandbox without rate limits, whose mutations pass the replica's safety gate.
func replicaDeps(t *testing.T, natsURL, sentryURL, prefix, owner string) (*nats.Conn, *redisstate.Store, *sentry.Client, *safety.Gate) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	coord, err := redisstate.Open(context.Background(), redisstate.Options{URL: redisURL(), Prefix: prefix})
	if err != nil {
		t.Fatalf("redis at %s: %v", redisURL(), err)
	}
	t.Cleanup(func() { _ = coord.Close() })
	gate, err := app.NewSafety(context.Background(), app.SafetyOptions{NC: nc, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sentry.New(sentry.Config{BaseURL: sentryURL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: gate,
		Budget: sentry.NewLocalBudget(sentry.LocalBudgetOptions{DefaultLimit: -1, DefaultConcurrency: -1})})
	if err != nil {
		t.Fatal(err)
	}
	return nc, coord, client, gate
}
