package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// idOnlyProvider is the tracer provider of a process that exports no traces
// (OTEL_TRACES_EXPORTER=none or unset where none is the default): recording
// spans that nobody exports costs CPU and memory on every request (the SDK
// keeps each span's attributes, events and timestamps until it ends) and
// gives nothing back.
//
// Its spans record nothing, but each has a span context, so logs still carry
// trace_id and span_id and the context still travels in HTTP and NATS
// headers:
//   - a span with a parent (local or remote) keeps the parent's trace id,
//     trace flags and trace state, with a span id of its own: the process is
//     transparent to the trace, as the OpenTelemetry API is without an SDK,
//     except that its log lines can be told apart;
//   - a root span gets a new random trace id and is not sampled (W3C Trace
//     Context: the sampled flag says the caller may have recorded data, and
//     this process recorded none), so a process downstream does not record
//     children of a parent nobody has.
type idOnlyProvider struct {
	embedded.TracerProvider
}

func (idOnlyProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return idOnlyTracer{} }

type idOnlyTracer struct {
	embedded.Tracer
}

// Start returns ctx carrying a non-recording span with a new span id (see
// idOnlyProvider for its trace id and flags).
func (idOnlyTracer) Start(ctx context.Context, _ string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	var parent trace.SpanContext
	if cfg := trace.NewSpanStartConfig(opts...); !cfg.NewRoot() {
		parent = trace.SpanContextFromContext(ctx)
	}
	sc := trace.SpanContextConfig{SpanID: newSpanID()}
	if parent.IsValid() {
		sc.TraceID, sc.TraceFlags, sc.TraceState = parent.TraceID(), parent.TraceFlags(), parent.TraceState()
	} else {
		sc.TraceID = newTraceID()
	}
	// trace.ContextWithSpanContext stores a non-recording span holding the
	// span context; SpanFromContext hands that span back.
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(sc))
	return ctx, trace.SpanFromContext(ctx)
}

// newTraceID and newSpanID draw from math/rand/v2's ChaCha8 source, which
// is seeded from the OS and safe for concurrent use: ids must be unique,
// not secret (the SDK's default generator is a seeded math/rand too).
func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}
