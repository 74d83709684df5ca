package app

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// testWorker builds a real worker on its own embedded NATS and Sentry
// sandbox, its mutations passing a real safety gate; tune sets more options
// before it is built. It returns the worker and the JetStream it uses.
func testWorker(t testing.TB, tune func(*WorkerOptions)) (*Worker, jetstream.JetStream) {
	t.Helper()
	w, js, _ := testWorkerSandbox(t, tune)
	return w, js
}

// testWorkerSandbox is testWorker that also returns the worker's sandbox.
func testWorkerSandbox(t testing.TB, tune func(*WorkerOptions)) (*Worker, jetstream.JetStream, *sentrytest.Server) {
	t.Helper()
	ctx := context.Background()
	srv, _, js := natstest.Run(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sb := sentrytest.NewServer(t, sentrytest.Options{RateLimit: -1})
	gate, err := NewSafety(ctx, SafetyOptions{NC: nc, Owner: "t"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	tel, _ := telemetry.New(ctx, telemetry.Options{})
	o := WorkerOptions{NC: nc, Coord: memstate.New(nil), Sentry: client, Telemetry: tel,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Owner: "t", Gate: gate, Target: "sandbox"}
	if tune != nil {
		tune(&o)
	}
	w, err := NewWorker(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return w, js, sb
}
