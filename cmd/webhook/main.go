// Command webhook is the stateless receiver of the production split: it verifies
// provider webhooks and publishes them to JetStream (JML_NATS_URL), answering only
// after the ack. Run several behind a load balancer. The receiver listens on
// JML_HTTP_ADDR; /healthz, /readyz and /metrics are also served on the admin
// listener, JML_ADMIN_ADDR, which Prometheus scrapes (not the public port).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/cmd/internal/wire"
	"github.com/sentry-jml/sentry-jml/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "webhook:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := config.Logger(os.Stderr, cfg.LogLevel)
	tel, err := config.Telemetry(ctx, "sentry-jml-webhook")
	if err != nil {
		return err
	}
	defer config.FlushTelemetry(tel)
	srcEnv, err := config.Sources()
	if err != nil {
		return err
	}
	enabled := 0
	for _, se := range srcEnv {
		if len(se.Secrets) > 0 {
			enabled++
		}
	}
	if enabled == 0 {
		return errors.New("config: no webhook source is enabled; set JML_SOURCE_GENERIC_SECRET (or another JML_SOURCE_<NAME>_SECRET)")
	}
	nc, err := cfg.ConnectNATS("jml-webhook", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	ready := app.NewReadiness(nc, false)
	base := wire.Base{Cfg: cfg, Log: log, Tel: tel, NC: nc, Ready: ready, Sources: srcEnv}
	h, err := wire.Receiver(ctx, base, srcEnv)
	if err != nil {
		return err
	}
	// The admin listener: probes and /metrics, never on the public webhook port.
	adminAddr, adminDone, err := config.Serve(ctx, cfg.AdminAddr, "JML_ADMIN_ADDR", wire.Probes(base))
	if err != nil {
		return err
	}
	addr, done, err := config.Serve(ctx, cfg.HTTPAddr, "JML_HTTP_ADDR", h)
	if err != nil {
		return err
	}
	log.Info("webhook receiver listening", "addr", addr, "admin", adminAddr, "sources", enabled)
	select {
	case err = <-done:
	case err = <-adminDone:
	}
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
