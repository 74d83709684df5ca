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

// PublishResult says where the event landed.
type PublishResult struct {
	Sequence  uint64
	Duplicate bool // JetStream already had this Nats-Msg-Id within the duplicate window
}

// Publish sends e with Nats-Msg-Id e.MsgID() and the trace context of ctx, and
// returns after JetStream has stored it (or recognised it as a duplicate).
func (p *Publisher) Publish(ctx context.Context, e Event) (PublishResult, error) {
	subject := e.Subject()
	ctx, span := p.tracer.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(subject),
			semconv.MessagingMessageID(e.MsgID()),
			attribute.String("jml.event.type", string(e.Type)),
			attribute.String("jml.event.source", e.Source),
		))
	defer span.End()
	data, err := Marshal(e)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "encode")
		return PublishResult{}, fmt.Errorf("publish %s: %w", e.MsgID(), err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(HeaderSource, e.Source)
	m.Header.Set(HeaderReceivedAt, e.ReceivedAt.UTC().Format(time.RFC3339Nano))
	p.prop.Inject(ctx, HeaderCarrier(m.Header))
	ack, err := p.js.PublishMsg(ctx, m, jetstream.WithMsgID(e.MsgID()), jetstream.WithExpectStream(StreamEvents))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish")
		return PublishResult{}, fmt.Errorf("publish %s: %w", e.MsgID(), err)
	}
	span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(ack.Sequence)), attribute.Bool("jml.duplicate", ack.Duplicate))
	return PublishResult{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}
