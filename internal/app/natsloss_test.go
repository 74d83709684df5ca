package app_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/natsconn"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// startNATS runs a JetStream server on port (0: a free one) with its store in dir.
func startNATS(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := status(t, url)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", url, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReceiverSurvivesNATSLoss runs the receiver on the daemon's connection
// options against a real nats-server: stopping the server makes /readyz fail
// while /healthz stays up (it is waiting, not dead); the same server back on
// its port is reconnected to and /readyz recovers, and webhooks are accepted
// again; a connection the server closes for good (a protocol line over its
// limit) makes /healthz fail on the receiver's port and on the probes
// listener, so the process is restarted.
func TestReceiverSurvivesNATSLoss(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ns := startNATS(t, 0, dir)
	port := ns.Addr().(*net.TCPAddr).Port
	nc, err := nats.Connect(ns.ClientURL(), natsconn.Options(natsconn.Config{Name: "test-receiver"})...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tel, err := telemetry.New(ctx, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ready := app.NewReadiness(nc, false)
	h, err := app.NewReceiver(ctx, app.ReceiverOptions{NC: nc, Specs: map[string]providers.Settings{"generic": {Secrets: []string{"whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0"}}},
		Telemetry: tel, Logger: slog.New(slog.DiscardHandler), Ready: ready.Check, Live: ready.Live})
	if err != nil {
		t.Fatal(err)
	}
	recv := httptest.NewServer(h)
	defer recv.Close()
	probes := httptest.NewServer(app.ProbesHandler(app.ProbesOptions{Ready: ready.Check, Live: ready.Live}))
	defer probes.Close()

	waitStatus(t, recv.URL+"/readyz", 200)
	ns.Shutdown()
	ns.WaitForShutdown()
	waitStatus(t, recv.URL+"/readyz", 503)
	waitStatus(t, probes.URL+"/readyz", 503)
	if got := status(t, recv.URL+"/healthz"); got != 200 {
		t.Fatalf("/healthz while reconnecting: %d", got)
	}

	ns = startNATS(t, port, dir)
	defer ns.Shutdown()
	waitStatus(t, recv.URL+"/readyz", 200)
	waitStatus(t, probes.URL+"/readyz", 200)
	if nc.Stats().Reconnects < 1 {
		t.Fatal("no reconnect counted")
	}
	if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatalf("JetStream after the reconnect: %v", err)
	}

	// A protocol line over the server's 4096-byte limit: the server closes
	// the connection and nats.go does not reconnect after that.
	_ = nc.Publish("jml.events."+strings.Repeat("x", 5000), nil)
	_ = nc.Flush()
	waitStatus(t, recv.URL+"/healthz", 503)
	waitStatus(t, probes.URL+"/healthz", 503)
	waitStatus(t, recv.URL+"/readyz", 503)
	if !nc.IsClosed() {
		t.Fatalf("connection %s, want closed", nc.Status())
	}
}
