package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

func cmdSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("JML_SANDBOX_ADDR", "127.0.0.1:9000"), "listen address")
	token := fs.String("token", envOr("JML_SANDBOX_TOKEN", "sandbox"), "service user token")
	scimToken := fs.String("scim-token", os.Getenv("JML_SANDBOX_SCIM_TOKEN"),
		"the org's SCIM token (Sentry issues one when SCIM is enabled; empty: one is generated and printed)")
	seedFile := fs.String("seed", "", "seed JSON file (default: the demo organization acme)")
	rate := fs.Int("rate-limit", 0, "requests per second per token, URL pattern and method (0 = 40 like Sentry; -1 = off)")
	latency := fs.Duration("latency", 0, "added latency per API request")
	conc := fs.Int("concurrent-limit", 0, "concurrent requests per token and URL pattern (0 = 25 like Sentry)")
	quota := fs.Bool("invite-quota", true, "apply Sentry's invite quotas (100 per org per day, 10 per email per day)")
	faultSeed := fs.Uint64("fault-seed", 0, "seed of the random source of probabilistic faults")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *scimToken == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("sandbox: scim token: %w", err)
		}
		*scimToken = hex.EncodeToString(b)
	}
	opts := sentrytest.Options{Token: *token, SCIMToken: *scimToken, RateLimit: *rate, Latency: *latency, ConcurrentLimit: *conc,
		DisableInviteQuota: !*quota, FaultSeed: *faultSeed}
	if *seedFile != "" {
		f, err := os.Open(*seedFile)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		seed, err := sentrytest.LoadSeed(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("sandbox: seed %s: %w", *seedFile, err)
		}
		opts.Seed = seed
	}
	if err := withSpecCheck(&opts); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	sb := sentrytest.New(opts)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("sandbox: -addr %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	drainNew(srv)
	fmt.Fprintf(stdout, "Sentry sandbox listening on http://%s (stats: /_sandbox/stats)\n", ln.Addr())
	// A sandbox secret, not a real one: printed so the SCIM path can be tried
	// (JML_SENTRY_SCIM_TOKEN); GET /_sandbox/scim shows it too.
	fmt.Fprintf(stdout, "SCIM token (SCIM routes only): %s\n", *scimToken)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
