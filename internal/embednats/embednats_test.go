package embednats_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/internal/embednats"
)

// TestListeningServerRequiresCredentials: a server that listens on a port
// refuses a client without its generated credentials, or with wrong ones, and
// accepts ClientURL and in-process connections.
func TestListeningServerRequiresCredentials(t *testing.T) {
	srv, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), Listen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	bare := srv.RedactedURL()
	if bare == "" || strings.Contains(bare, "@") {
		t.Fatalf("RedactedURL = %q, want a nats:// URL without credentials", bare)
	}
	if nc, err := nats.Connect(bare, nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("an unauthenticated client was accepted")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("unauthenticated connect: %v, want an authorization error", err)
	}
	if nc, err := nats.Connect(bare, nats.UserInfo("jml", "wrong"), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client with a wrong password was accepted")
	}
	full := srv.ClientURL()
	if !strings.Contains(full, "@") {
		t.Fatalf("ClientURL = %q, want credentials in it", full)
	}
	nc, err := nats.Connect(full, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect with ClientURL: %v", err)
	}
	nc.Close()
	in, err := srv.Connect("test")
	if err != nil {
		t.Fatalf("in-process connect: %v", err)
	}
	in.Close()
}

// TestTwoServersHaveDistinctCredentials: the password is random per start.
func TestTwoServersHaveDistinctCredentials(t *testing.T) {
	a, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), Listen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Shutdown)
	b, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), Listen: true, ServerName: "b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	pw := func(s *embednats.Server) string {
		u := s.ClientURL()
		return u[:strings.Index(u, "@")]
	}
	if pw(a) == pw(b) {
		t.Fatal("two servers share credentials")
	}
}

// TestInProcessOnly: without Listen there is no URL and in-process clients connect.
func TestInProcessOnly(t *testing.T) {
	srv, err := embednats.Start(embednats.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if srv.ClientURL() != "" || srv.RedactedURL() != "" {
		t.Fatalf("URLs without a listener: %q %q", srv.ClientURL(), srv.RedactedURL())
	}
	nc, err := srv.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}
