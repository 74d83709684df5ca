package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Publisher publishes events to JML_EVENTS and waits for the JetStream ack.
type Publisher struct {
	js     jetstream.Publisher
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	// async: publish with PublishMsgAsync and wait for this message's own
	// ack, at most asyncWait (NewAsyncPublisher).
	async     bool
	asyncWait time.Duration
}

// NewPublisher returns a Publisher. tp and prop may be nil (the global ones).
func NewPublisher(js jetstream.Publisher, tp trace.TracerProvider, prop propagation.TextMapPropagator) *Publisher {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	return &Publisher{js: js, tracer: tp.Tracer("github.com/sentry-jml/sentry-jml/internal/events"), prop: prop}
}

// NewAsyncPublisher is NewPublisher for many concurrent callers on one
// connection (the webhook receiver): each Publish sends its message with
// PublishMsgAsync and still returns only after that message's ack (or an
// error), so durability is the same, but concurrent publishes share the
// connection's writes and the ack subscription instead of a request round
// trip each.
//
// js should be created with jetstream.WithPublishAsyncTimeout: the future
// of an ack that never comes then fails with ErrAsyncPublishTimeout and is
// dropped from the pending set. wait > 0 adds a bound of this publisher's
// own (a timer per publish) for a js without one; 0 leaves the bound to js
// and ctx.
func NewAsyncPublisher(js jetstream.Publisher, tp trace.TracerProvider, prop propagation.TextMapPropagator, wait time.Duration) *Publisher {
	p := NewPublisher(js, tp, prop)
	p.async, p.asyncWait = true, wait
	return p
}

// PublishResult says where the event landed.
type PublishResult struct {
	Sequence  uint64
	Duplicate bool // JetStream already had this Nats-Msg-Id within the duplicate window
}

// Publish sends e with Nats-Msg-Id e.MsgID() and the trace context of ctx, and
// returns after JetStream has stored it (or recognised it as a duplicate).
func (p *Publisher) Publish(ctx context.Context, e Event) (PublishResult, error) {
	subject, id := e.Subject(), e.MsgID()
	ctx, span := p.tracer.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(subject),
			semconv.MessagingMessageID(id),
			attribute.String("jml.event.type", string(e.Type)),
			attribute.String("jml.event.source", e.Source),
		)
	}
	defer span.End()
	data, err := Marshal(e)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "encode")
		return PublishResult{}, fmt.Errorf("publish %s: %w", id, err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(HeaderSource, e.Source)
	m.Header.Set(HeaderReceivedAt, e.ReceivedAt.UTC().Format(time.RFC3339Nano))
	p.prop.Inject(ctx, HeaderCarrier(m.Header))
	var ack *jetstream.PubAck
	if p.async {
		ack, err = p.publishAsync(ctx, m, id)
	} else {
		ack, err = p.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamEvents))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish")
		return PublishResult{}, fmt.Errorf("publish %s: %w", id, err)
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(ack.Sequence)), attribute.Bool("jml.duplicate", ack.Duplicate))
	}
	return PublishResult{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// publishAsync sends m and waits for its own ack, an error, ctx or asyncWait.
func (p *Publisher) publishAsync(ctx context.Context, m *nats.Msg, id string) (*jetstream.PubAck, error) {
	f, err := p.js.PublishMsgAsync(m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamEvents))
	if err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok && p.asyncWait > 0 {
		t := time.NewTimer(p.asyncWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the ack: %w", ctx.Err())
	case <-timeout:
		return nil, fmt.Errorf("no ack within %s: %w", p.asyncWait, context.DeadlineExceeded)
	}
}
