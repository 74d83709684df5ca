// Command sandboxd runs the Sentry API sandbox (internal/sentry/sentrytest) as
// its own process for the chaos suite. It is `jml sandbox` plus the knobs a
// long adversarial run needs and that command does not expose: invite quotas
// off (Sentry's 100 invites per org per day would hold a 10,000-event run for
// a day), the concurrency cap, and the fault seed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	token := flag.String("token", "sandbox", "service user token")
	seedFile := flag.String("seed", "", "seed JSON file (default: the demo organization acme)")
	rate := flag.Int("rate-limit", 0, "requests per second per token, URL pattern and method (0 = 40 like Sentry; -1 = off)")
	conc := flag.Int("concurrent-limit", 0, "concurrent requests per token and URL pattern (0 = 25 like Sentry)")
	latency := flag.Duration("latency", 0, "added latency per API request")
	quota := flag.Bool("invite-quota", true, "apply Sentry's invite quotas (100 per org per day, 10 per email per day)")
	faultSeed := flag.Uint64("fault-seed", 0, "seed of the random source of probabilistic faults")
	flag.Parse()
	opts := sentrytest.Options{Token: *token, RateLimit: *rate, ConcurrentLimit: *conc, Latency: *latency,
		DisableInviteQuota: !*quota, FaultSeed: *faultSeed}
	if *seedFile != "" {
		f, err := os.Open(*seedFile)
		if err != nil {
			return err
		}
		seed, err := sentrytest.LoadSeed(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("seed %s: %w", *seedFile, err)
		}
		opts.Seed = seed
	}
	sb := sentrytest.New(opts)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("sandboxd listening on http://%s\n", ln.Addr())
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
