package events

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS names. They are part of the operator contract (README): change them only
// with a migration.
const (
	StreamEvents   = "JML_EVENTS"
	StreamDLQ      = "JML_DLQ"
	SubjectPrefix  = "jml.events"
	DLQPrefix      = "jml.dlq"
	ConsumerWorker = "jml-worker"

	HeaderMsgID      = "Nats-Msg-Id"
	HeaderSource     = "Jml-Source"
	HeaderReceivedAt = "Jml-Received-At"
	HeaderError      = "Jml-Error"
	HeaderDeliveries = "Jml-Deliveries"
	HeaderOrigSeq    = "Jml-Stream-Seq"
	// HeaderTruncated is set on a dead letter whose body was cut to
	// MaxEventBytes: the original size in bytes.
	HeaderTruncated = "Jml-Truncated"
	// HeaderDroppedHeaders counts the message's headers a dead letter did not
	// copy (oversized).
	HeaderDroppedHeaders = "Jml-Dropped-Headers"
)

// Subject returns jml.events.<source>.<type>.
func Subject(source string, t Type) string { return SubjectPrefix + "." + source + "." + string(t) }

// StreamOptions size the streams. Zero values give the defaults documented in the README.
type StreamOptions struct {
	Replicas   int           // 1 (all-in-one) or 3 (cluster)
	MaxAge     time.Duration // how long events are kept to rebuild the directory; default 90 days
	Duplicates time.Duration // Nats-Msg-Id window; default 10 minutes
	Memory     bool          // memory storage, for benchmarks only
}

// EnsureStreams creates or updates JML_EVENTS and JML_DLQ. It is idempotent.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 90 * 24 * time.Hour
	}
	if o.Duplicates <= 0 {
		o.Duplicates = 10 * time.Minute
	}
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "sentry-jml lifecycle events (kept to rebuild the directory)",
		Subjects:    []string{SubjectPrefix + ".>"},
		Storage:     storage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      o.MaxAge,
		Duplicates:  o.Duplicates,
		Replicas:    o.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamEvents, err)
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        StreamDLQ,
		Description: "sentry-jml dead letters: events that failed for good, with the error",
		Subjects:    []string{DLQPrefix + ".>"},
		Storage:     storage,
		MaxAge:      30 * 24 * time.Hour,
		Duplicates:  o.Duplicates,
		Replicas:    o.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamDLQ, err)
	}
	return nil
}

// ensureStream creates the stream, or updates it when its configuration
// differs from cfg in the fields set here. Every process calls it at start:
// an unchanged stream costs one info request instead of an update (a Raft
// proposal on a cluster, racing other replicas' consumer creation).
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	if st, err := js.Stream(ctx, cfg.Name); err == nil {
		have := st.CachedInfo().Config
		if have.Description == cfg.Description && slices.Equal(have.Subjects, cfg.Subjects) && have.Storage == cfg.Storage &&
			have.Retention == cfg.Retention && have.MaxAge == cfg.MaxAge && have.Duplicates == cfg.Duplicates && have.Replicas == cfg.Replicas {
			return nil
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err := js.CreateOrUpdateStream(ctx, cfg)
	return err
}

// HeaderCarrier adapts NATS headers to OpenTelemetry's TextMapCarrier. It writes the
// lower-case W3C keys and reads them case-insensitively, because NATS header keys
// are case-sensitive and other clients may write "Traceparent".
type HeaderCarrier nats.Header

// Get returns the first value of key, matched case-insensitively.
func (c HeaderCarrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	for k, vs := range c {
		if len(vs) > 0 && strings.EqualFold(k, key) {
			return vs[0]
		}
	}
	return ""
}

// Set stores value under key as given.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header keys.
func (c HeaderCarrier) Keys() []string { return slices.Collect(maps.Keys(c)) }
