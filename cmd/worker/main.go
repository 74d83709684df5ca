// Command worker is the worker process of the production split: it consumes
// JML_EVENTS from JetStream (JML_NATS_URL), coordinates with other replicas
// through Redis (JML_REDIS_URL), converges people in Sentry and runs the
// scheduled jobs. It serves /healthz, /readyz and /metrics on JML_ADMIN_ADDR.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	if err := cfg.CheckSentry(); err != nil {
		return err
	}
	if cfg.RedisURL == "" && len(cfg.RedisAddrs) == 0 {
		return errors.New("config: JML_REDIS_URL (or JML_REDIS_ADDRS) is required: worker replicas share dedupe keys and leases through Redis")
	}
	pol, err := cfg.Policy()
	if err != nil {
		return err
	}
	log := config.Logger(os.Stderr, cfg.LogLevel)
	tel, err := config.Telemetry(ctx, "sentry-jml-worker")
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	client, err := sentry.New(sentry.Config{BaseURL: cfg.SentryBaseURL(), Org: cfg.SentryOrg, Token: cfg.SentryToken, SCIMToken: cfg.SentrySCIMToken,
		Logger: log, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider})
	if err != nil {
		return fmt.Errorf("JML_SENTRY_TOKEN: %w", err)
	}
	coord, err := redisstate.Open(ctx, cfg.RedisOptions())
	if err != nil {
		return fmt.Errorf("JML_REDIS_URL: %w", err)
	}
	defer coord.Close()
	nc, err := cfg.ConnectNATS("jml-worker", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	ready := app.NewReadiness(nc, true)
	admin := app.AdminHandler(app.AdminOptions{Ready: ready.Check, Metrics: tel.MetricsHandler(), Token: cfg.AdminToken})
	addr, _, err := config.Serve(ctx, cfg.AdminAddr, "JML_ADMIN_ADDR", admin)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	log.Info("worker starting", "admin", addr)
	return app.RunWorker(ctx, app.WorkerOptions{NC: nc, Coord: coord, Sentry: client, Telemetry: tel, Logger: log,
		Owner: fmt.Sprintf("%s:%d", host, os.Getpid()), Policy: func() policy.Policy { return pol }, Streams: cfg.Streams(), Ready: ready, Target: "sentry"})
}
