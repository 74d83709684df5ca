package wire

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/alert"
	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// Base is what every role of one process shares.
type Base struct {
	Cfg   config.Common
	Log   *slog.Logger
	Tel   *telemetry.Telemetry
	NC    *nats.Conn
	Ready *app.Readiness
	// Sources is the per-provider configuration (config.Sources).
	Sources map[string]providers.Settings
}

// Receiver builds the webhook receiver. specs are the providers' settings
// (b.Sources, possibly amended: the all-in-one fills in the generic source's
// generated secret).
func Receiver(ctx context.Context, b Base, specs map[string]providers.Settings) (http.Handler, error) {
	return app.NewReceiver(ctx, app.ReceiverOptions{NC: b.NC, Specs: specs, MaxBody: b.Cfg.MaxBodyBytes, MaxClockSkew: b.Cfg.MaxClockSkew,
		PublicURL: b.Cfg.PublicURL, Streams: b.Cfg.Streams(), Telemetry: b.Tel, Logger: b.Log, Ready: b.Ready.Check, Live: b.Ready.Live})
}

// WorkerParts are the worker role's infrastructure and identity, chosen by
// the process.
type WorkerParts struct {
	// Coord is the coordination store (Redis, or in-process for the all-in-one).
	Coord state.Coordinator
	// Redis, when set, shares the Sentry rate budget and concurrency cap with
	// the fleet (nil: the client paces alone).
	Redis *redisstate.Store
	// Sentry is the client's target and tokens (the real Sentry or the
	// sandbox); Logger, telemetry, Gate and Budget are filled in here.
	Sentry sentry.Config
	// SentryErr wraps a client construction error (it names the variable to fix).
	SentryErr string
	Policy    func() policy.Policy
	Auth      config.AdminAuth
	Owner     string
	Role      string // "worker" or "all-in-one": the safety gate's role
	Target    string // recorded in evidence: "sentry" or "sandbox"
	Alerts    *alert.Notifier
	// EvidenceKeyGenerated allows the evidence key generated into the data dir
	// (the all-in-one; config.Common.EvidenceKey).
	EvidenceKeyGenerated bool
	// Status, when set, answers the admin API's status route.
	Status func(context.Context) any
}

// Worker is a built worker role: the consumer with its scheduler, the Sentry
// client it mutates through, and the admin API in front of it.
type Worker struct {
	App    *app.Worker
	Sentry *sentry.Client
	Admin  http.Handler
}

// Run consumes events and runs the scheduled jobs until ctx ends.
func (w *Worker) Run(ctx context.Context) error { return w.App.Run(ctx) }

// NewWorker builds the worker role. Every Sentry mutation passes the safety
// gate (pause, brakes, lease), so the gate comes before the client. The first
// Sentry check happens in app.NewWorker, so a bad token fails start-up with
// one line.
func NewWorker(ctx context.Context, b Base, p WorkerParts) (*Worker, error) {
	okta, err := config.OktaCatchUp(b.Sources, b.Log)
	if err != nil {
		return nil, err
	}
	gate, err := app.NewSafety(ctx, app.SafetyOptions{NC: b.NC, Streams: b.Cfg.Streams(), Policy: p.Policy, Owner: p.Owner,
		Role: p.Role, Alerts: p.Alerts, Logger: b.Log, Meter: b.Tel.MeterProvider})
	if err != nil {
		return nil, err
	}
	scfg := p.Sentry
	scfg.Logger, scfg.TracerProvider, scfg.MeterProvider, scfg.Gate = b.Log, b.Tel.TracerProvider, b.Tel.MeterProvider, gate
	if p.Redis != nil {
		// The Sentry rate budget and concurrency cap are shared by the fleet;
		// while Redis is down each live replica paces at its 1/N share.
		scfg.Budget = p.Redis.Budget(redisstate.BudgetOptions{Logger: b.Log, LiveReplicas: gate.LiveReplicas})
	}
	client, err := sentry.New(scfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.SentryErr, err)
	}
	evKey, evKeySource, err := b.Cfg.EvidenceKey(p.EvidenceKeyGenerated)
	if err != nil {
		client.Close()
		return nil, err
	}
	b.Log.Info("evidence signing key", "source", evKeySource, "anchor_every", b.Cfg.EvidenceAnchorEvery.String())
	wk, err := app.NewWorker(ctx, app.WorkerOptions{NC: b.NC, Coord: p.Coord, Sentry: client, Telemetry: b.Tel, Logger: b.Log,
		MaxClockSkew: b.Cfg.MaxClockSkew, IDSpaces: b.Cfg.IDSpaces(), Owner: p.Owner, Policy: p.Policy, Gate: gate,
		Streams: b.Cfg.Streams(), Ready: b.Ready, Target: p.Target, SourceAPIs: providers.APIs(b.Sources), Alerts: p.Alerts,
		OktaCatchUp: okta, Sources: providers.Names(), EvidenceKey: evKey, EvidenceAnchorEvery: b.Cfg.EvidenceAnchorEvery,
		AuditPoll: b.Cfg.AuditPoll, // the audit-log follower (JML_AUDIT_POLL)
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	admin := app.AdminHandler(p.Auth.Options(app.AdminOptions{Ready: b.Ready.Check, Live: b.Ready.Live, Metrics: b.Tel.MetricsHandler(),
		Logger: b.Log, Status: p.Status, Worker: wk, Routes: adminRoutes(wk, b.Cfg)}))
	return &Worker{App: wk, Sentry: client, Admin: admin}, nil
}

// adminRoutes are the worker's /v1 routes beyond the built-in ones.
func adminRoutes(wk *app.Worker, cfg config.Common) []func(handle func(pattern string, f func(*http.Request) (any, error))) {
	r := app.ReconcileRoutes(wk, cfg.Reconcile())
	r = append(r, app.EvidenceRoutes(wk)...)
	r = append(r, app.ReportRoutes(wk)...)
	return append(r, app.AccessRoutes(wk)...)
}

// Probes is the admin listener of a process without a worker: probes and
// /metrics only.
func Probes(b Base) http.Handler {
	return app.ProbesHandler(app.ProbesOptions{Ready: b.Ready.Check, Live: b.Ready.Live, Metrics: b.Tel.MetricsHandler()})
}
