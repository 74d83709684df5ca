// Package natstest starts a real embedded nats-server with JetStream for tests,
// isolated per test on a random loopback port with its store in t.TempDir().
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats"
	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Run starts a server listening on a random loopback port and returns it with a
// TCP client connection and a JetStream handle whose streams already exist.
func Run(tb testing.TB) (*embednats.Server, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	srv, err := embednats.Start(embednats.Options{StoreDir: tb.TempDir(), Listen: true})
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		srv.Shutdown()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close(); srv.Shutdown() })
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{}); err != nil {
		tb.Fatal(err)
	}
	return srv, nc, js
}
