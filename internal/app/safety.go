package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/alert"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// SafetyOptions configure NewSafety.
type SafetyOptions struct {
	NC      *nats.Conn
	Streams events.StreamOptions
	// Policy returns the current policy (brakes.max_event_removals_per_minute,
	// brakes.approvals).
	Policy func() policy.Policy
	// Owner names this replica (the worker's lease owner).
	Owner  string
	Role   string
	Alerts *alert.Notifier
	Logger *slog.Logger
	Meter  metric.MeterProvider
}

// NewSafety opens the switch board (JML_CONTROL) and the replica registry
// (JML_REPLICAS) and builds the safety gate of one replica. Build it before
// the Sentry client (sentry.Config.Gate) and pass it to NewWorker, whose Run
// keeps it watching and heartbeating.
func NewSafety(ctx context.Context, o SafetyOptions) (*safety.Gate, error) {
	js, err := jetstream.New(o.NC)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	jo := jsstate.Options{Replicas: o.Streams.Replicas}
	pol := o.Policy
	if pol == nil {
		def := policy.Default()
		pol = func() policy.Policy { return def }
	}
	control, err := jsstate.OpenControl(ctx, js, jo, func() int { return pol().Brakes.MaxEventRemovalsPerMinute },
		func() int { return pol().Brakes.Approvals })
	if err != nil {
		return nil, err
	}
	presence, err := jsstate.OpenPresence(ctx, js, jo)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return safety.New(safety.Options{Control: control, Presence: presence, ID: o.Owner, Role: o.Role, Logger: log, Meter: o.Meter,
		Alert: func(ctx context.Context, kind, person, summary string) {
			notify(ctx, o.Alerts, log, kind, person, summary)
		}})
}

// notify logs an operator alert and sends it to the configured sinks.
func notify(ctx context.Context, n *alert.Notifier, log *slog.Logger, kind, person, summary string) {
	log.WarnContext(ctx, "alert", "kind", kind, "person", person, "summary", summary)
	if n == nil {
		return
	}
	if err := n.Notify(ctx, alert.Alert{Kind: alert.Kind(kind), Summary: summary, Person: person}); err != nil {
		log.WarnContext(ctx, "alert not sent", "kind", kind, "err", err)
	}
}
