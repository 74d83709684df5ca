package app

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/handlers/receiver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// ReceiverOptions are the receiver's dependencies.
type ReceiverOptions struct {
	NC *nats.Conn
	// Specs enables sources by name; Sources adds prebuilt ones.
	Specs   map[string]providers.Settings
	Sources []sources.Source
	MaxBody int64
	// MaxClockSkew bounds event times ahead of the clock (JML_MAX_CLOCK_SKEW).
	MaxClockSkew time.Duration
	// PublicURL is the receiver's external URL (JML_PUBLIC_URL), for the
	// links SCIM returns; empty means root-relative links.
	PublicURL string
	Streams   events.StreamOptions
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	Ready     func(context.Context) error
	// Live reports liveness for /healthz (Readiness.Live).
	Live func(context.Context) error
}

// publishAckWait bounds the wait for one event's JetStream ack, like
// jetstream's default timeout for a synchronous publish; a 503 follows.
const publishAckWait = 5 * time.Second

// NewReceiver ensures the streams exist and returns the webhook HTTP handler.
// It does not serve /metrics: that is the admin listener's (AdminHandler,
// ProbesHandler), never the public webhook port.
func NewReceiver(ctx context.Context, o ReceiverOptions) (http.Handler, error) {
	// Acks of the receiver's publishes are awaited per request (202 only
	// after the ack); the async timeout drops a pending ack that never comes.
	js, err := jetstream.New(o.NC, jetstream.WithPublishAsyncTimeout(publishAckWait))
	if err != nil {
		return nil, err
	}
	if err := events.EnsureStreams(ctx, js, o.Streams); err != nil {
		return nil, err
	}
	// The JetStream context's async timeout (above) is the only bound needed:
	// it fails the ack's future, and a second timer per event would cost
	// CPU for nothing.
	pub := events.NewAsyncPublisher(js, o.Telemetry.TracerProvider, o.Telemetry.Propagator, 0)
	srcs, extra, err := Sources(ctx, js, o.Specs, pub, jsstate.Options{Replicas: o.Streams.Replicas}, o.Logger,
		SourcesOptions{PublicURL: o.PublicURL, MeterProvider: o.Telemetry.MeterProvider})
	if err != nil {
		return nil, err
	}
	srcs = append(srcs, o.Sources...)
	return receiver.New(receiver.Options{
		Publisher:      pub,
		Sources:        srcs,
		Extra:          extra,
		MaxBody:        o.MaxBody,
		MaxClockSkew:   o.MaxClockSkew,
		Logger:         o.Logger,
		TracerProvider: o.Telemetry.TracerProvider,
		MeterProvider:  o.Telemetry.MeterProvider,
		Propagator:     o.Telemetry.Propagator,
		Ready:          o.Ready,
		Live:           o.Live,
	})
}
