package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
)

// inMemory is an http.RoundTripper that serves requests from the sandbox
// handler directly: no sockets, no rate limits, no latency.
type inMemory struct{ h http.Handler }

func (t inMemory) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// BenchmarkLeaverPipeline measures the per-event pipeline — JetStream consume,
// dedupe, lease, directory, convergence (warm member index: detail read and
// removal), snapshot, evidence, ack — with an in-memory Sentry transport.
// ns/op is wall time per leaver with the worker's default concurrency.
func BenchmarkLeaverPipeline(b *testing.B) {
	ctx := context.Background()
	_, _, js := natstest.Run(b)
	seed := sentrytest.DemoSeed()
	seed.Generate = &sentrytest.SeedGenerate{Members: b.N + 10, Teams: 10}
	sb := sentrytest.New(sentrytest.Options{Seed: seed, RateLimit: -1})
	client, err := sentry.New(sentry.Config{BaseURL: "http://sandbox.invalid", Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: &safetytest.Gate{},
		HTTPClient: &http.Client{Transport: inMemory{sb}}, Budget: sentry.NewLocalBudget(sentry.LocalBudgetOptions{DefaultLimit: -1, DefaultConcurrency: -1})})
	if err != nil {
		b.Fatal(err)
	}
	me, err := client.Me(ctx)
	if err != nil {
		b.Fatal(err)
	}
	records, err := jsstate.Open(ctx, js, jsstate.Options{})
	if err != nil {
		b.Fatal(err)
	}
	index := converge.NewMemberIndex()
	if _, err := index.Warm(ctx, client.ListMembers(ctx, "")); err != nil {
		b.Fatal(err)
	}
	tokens := converge.NewTokenIndex()
	active, err := client.ListOrgAuthTokens(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := tokens.Build(ctx, client.AuditLogs(ctx, sentry.AuditLogQuery{Event: "org-auth-token.create"}), active); err != nil {
		b.Fatal(err)
	}
	pol := policy.Default()
	conv, err := converge.New(converge.Options{Sentry: client, SelfMemberID: me.ID, SelfRole: me.OrgRole, Policy: func() policy.Policy { return pol },
		Snapshots: records.Snapshots, Index: index, Tokens: tokens})
	if err != nil {
		b.Fatal(err)
	}
	coord := memstate.New(nil)
	w, err := worker.New(worker.Options{JS: js, Dedupe: coord, Leases: coord, Directory: records.Directory, Converger: conv, Due: records.Due, Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	pub := events.NewPublisher(js, nil, nil)
	for i := 1; i <= b.N; i++ {
		ev := events.Event{ID: fmt.Sprintf("bench-%d", i), Source: "generic", Type: events.Leaver, OccurredAt: time.Now().UTC(), ReceivedAt: time.Now().UTC(),
			Person: events.Person{Email: fmt.Sprintf("user%06d@acme.test", i), Status: events.Terminated}}
		if _, err := pub.Publish(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0 := processCPU(b)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	for len(sb.Stats().Mutations["member.remove"]) < b.N {
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	// CPU of the whole process (worker, embedded NATS server, in-memory
	// sandbox) per leaver: unlike ns/op it does not fall with more cores.
	b.ReportMetric(float64(processCPU(b)-cpu0)/1e3/float64(b.N), "cpu-µs/op")
	cancel()
	<-done
}

// processCPU is this process's user+system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
