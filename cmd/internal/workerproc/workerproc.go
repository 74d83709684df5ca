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
	okta, err := config.OktaCatchUp(srcEnv, log)
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
	// Every Sentry mutation passes the safety gate (pause, brakes, lease).
	gate, err := app.NewSafety(ctx, app.SafetyOptions{NC: nc, Streams: cfg.Streams(), Policy: polNow, Owner: owner, Role: "worker",
		Alerts: alerts, Logger: log, Meter: tel.MeterProvider})
	if err != nil {
		return err
	}
	// The Sentry rate budget and concurrency cap are shared by every replica;
	// while Redis is down each live replica paces at its 1/N share.
	client, err := sentry.New(sentry.Config{BaseURL: cfg.SentryBaseURL(), Org: cfg.SentryOrg, Token: cfg.SentryToken, SCIMToken: cfg.SentrySCIMToken,
		Logger: log, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Gate: gate,
		Budget: coord.Budget(redisstate.BudgetOptions{Logger: log, LiveReplicas: gate.LiveReplicas})})
	if err != nil {
		return fmt.Errorf("JML_SENTRY_TOKEN: %w", err)
	}
	evKey, evKeySource, err := cfg.EvidenceKey(false)
	if err != nil {
		return err
	}
	log.Info("evidence signing key", "source", evKeySource, "anchor_every", cfg.EvidenceAnchorEvery.String())
	wk, err := app.NewWorker(ctx, app.WorkerOptions{NC: nc, Coord: coord, Sentry: client, Telemetry: tel, Logger: log, MaxClockSkew: cfg.MaxClockSkew, IDSpaces: cfg.IDSpaces(),
		Owner: owner, Policy: polNow, Gate: gate,
		Streams: cfg.Streams(), Ready: ready, Target: "sentry", SourceAPIs: config.SourceAPIs(srcEnv), Alerts: alerts, OktaCatchUp: okta,
		Sources: config.SourceNames(), EvidenceKey: evKey, EvidenceAnchorEvery: cfg.EvidenceAnchorEvery,
		AuditPoll: cfg.AuditPoll, // issue 18: the audit-log follower (JML_AUDIT_POLL)
	})
	if err != nil {
		return err
	}
	admin := app.AdminHandler(auth.Options(app.AdminOptions{Ready: ready.Check, Live: ready.Live, Metrics: tel.MetricsHandler(), Logger: log, Worker: wk,
		Routes: append(app.ReconcileRoutes(wk, cfg.Reconcile()), append(append(app.EvidenceRoutes(wk), app.ReportRoutes(wk)...), app.AccessRoutes(wk)...)...)}))
	addr, _, err := config.Serve(ctx, cfg.AdminAddr, "JML_ADMIN_ADDR", admin)
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
