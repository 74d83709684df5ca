package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// TestOneLeaverIsOneTrace: the receiver's server span, the JetStream publish
// (producer), the worker's consume (consumer, parented through NATS headers), the
// convergence and the Sentry HTTP calls (client) share one trace id.
func TestOneLeaverIsOneTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), telemetry.Options{SpanExporter: exp, Synchronous: true})
	if err != nil {
		t.Fatal(err)
	}
	sys := mustRunMainWith(t, "", tel)
	c := newSignedClient(t, sys)
	const who = "jane.doe@acme.test"
	if r := c.send("msg_trace_1", leaverBody(who)); r.status != http.StatusAccepted {
		t.Fatalf("%d %v", r.status, r.body)
	}
	eventually(t, who+" is gone", func() bool { _, ok := sys.sandbox.Member(who); return !ok })

	var server trace.TraceID
	eventually(t, "the trace is complete", func() bool {
		spans := exp.GetSpans()
		for _, s := range spans {
			if s.SpanKind == trace.SpanKindServer && s.Name == "POST /hooks/generic" {
				server = s.SpanContext.TraceID()
			}
		}
		if !server.IsValid() {
			return false
		}
		kinds := map[string]bool{}
		for _, s := range spans {
			if s.SpanContext.TraceID() != server {
				continue
			}
			switch {
			case s.SpanKind == trace.SpanKindProducer && s.Name == "send jml.events.generic.leaver":
				kinds["producer"] = true
			case s.SpanKind == trace.SpanKindConsumer && s.Name == "process jml.events.generic.leaver":
				kinds["consumer"] = true
			case s.Name == "converge":
				kinds["converge"] = true
			case s.Name == "converge.remove_member":
				kinds["step"] = true
			case s.SpanKind == trace.SpanKindClient && strings.HasPrefix(s.Name, "DELETE"):
				kinds["sentry-delete"] = true
			case s.SpanKind == trace.SpanKindClient && strings.HasPrefix(s.Name, "GET"):
				kinds["sentry-lookup"] = true
			}
		}
		return len(kinds) == 6
	})
	// The consumer span's parent is the producer span: the context crossed NATS.
	var producer, consumerParent trace.SpanID
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() != server {
			continue
		}
		if s.SpanKind == trace.SpanKindProducer {
			producer = s.SpanContext.SpanID()
		}
		if s.SpanKind == trace.SpanKindConsumer {
			consumerParent = s.Parent.SpanID()
		}
	}
	if producer != consumerParent {
		t.Fatalf("consumer parent %s, producer %s", consumerParent, producer)
	}
}
