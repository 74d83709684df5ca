package workerproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/cmd/internal/wire"
	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
)

// Run runs one worker replica until ctx ends, configured from the
// environment (config.Load). stderr receives the JSON logs.
func Run(ctx context.Context, stderr io.Writer) error {
	// JML_CPUPROFILE (used by `jml bench revoke -worker-cpuprofile`) writes a
	// CPU profile of the whole run to that file.
	if f := os.Getenv("JML_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			return fmt.Errorf("JML_CPUPROFILE: %w", err)
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return fmt.Errorf("JML_CPUPROFILE: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
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
	auth, err := cfg.AdminAuth()
	if err != nil {
		return err
	}
	if err := auth.CheckApprovals(pol); err != nil {
		return err
	}
	log := config.Logger(stderr, cfg.LogLevel)
	tel, err := config.Telemetry(ctx, "sentry-jml-worker")
	if err != nil {
		return err
	}
	defer config.FlushTelemetry(tel)
	coord, err := redisstate.Open(ctx, cfg.RedisOptions())
	if err != nil {
		return fmt.Errorf("JML_REDIS_URL: %w", err)
	}
	defer coord.Close()
	srcEnv, err := config.Sources()
	if err != nil {
		return err
	}
	alerts, err := cfg.Alerts(log, tel.MeterProvider)
	if err != nil {
		return err
	}
	if alerts != nil {
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = alerts.Close(sctx)
		}()
	}
	nc, err := cfg.ConnectNATS("jml-worker", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	ready := app.NewReadiness(nc, true)
	var current atomic.Pointer[policy.Policy]
	current.Store(&pol)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			p, err := cfg.Policy()
			if err == nil {
				err = auth.CheckApprovals(p)
			}
			if err != nil {
				log.Error("policy reload refused; the previous policy stays in force", "err", err)
				continue
			}
			current.Store(&p)
			log.Info("policy reloaded", "file", cfg.PolicyFile)
		}
	}()
	host, _ := os.Hostname()
	owner := fmt.Sprintf("%s:%d", host, os.Getpid())
	polNow := func() policy.Policy { return *current.Load() }
	// The worker role and its scheduler, wired as in every process (wire).
	wk, err := wire.NewWorker(ctx, wire.Base{Cfg: cfg, Log: log, Tel: tel, NC: nc, Ready: ready, Sources: srcEnv}, wire.WorkerParts{
		Coord: coord, Redis: coord, Policy: polNow, Auth: auth, Owner: owner, Role: "worker", Target: "sentry", Alerts: alerts,
		Sentry:    sentry.Config{BaseURL: cfg.SentryBaseURL(), Org: cfg.SentryOrg, Token: cfg.SentryToken, SCIMToken: cfg.SentrySCIMToken},
		SentryErr: "JML_SENTRY_TOKEN",
	})
	if err != nil {
		return err
	}
	addr, _, err := config.Serve(ctx, cfg.AdminAddr, "JML_ADMIN_ADDR", wk.Admin)
	if err != nil {
		return err
	}
	log.Info("worker started", "admin", addr, "admin_token", adminTokenSource(auth))
	return wk.Run(ctx)
}

// adminTokenSource names where the admin tokens come from, never a token.
func adminTokenSource(a config.AdminAuth) string {
	if a.Generated != "" {
		return a.Generated
	}
	return fmt.Sprintf("configured (%d named operators)", a.Named)
}
