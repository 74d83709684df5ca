package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

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

// TestFutureDatedChangeLinksItsWebhook: a leaver with effective_at is
// scheduled under the webhook's trace; when it is released later, the release
// span (a new trace: the scheduler's work) links to the handling that
// scheduled it, and the convergence it causes runs under the release span —
// the story of the webhook continues.
func TestFutureDatedChangeLinksItsWebhook(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), telemetry.Options{SpanExporter: exp, Synchronous: true})
	if err != nil {
		t.Fatal(err)
	}
	sys := mustRunMainWith(t, "", tel)
	c := newSignedClient(t, sys)
	const who = "jane.doe@acme.test"
	now := time.Now().UTC()
	body := []byte(fmt.Sprintf(`{"type":"leaver","occurred_at":%q,"effective_at":%q,"person":{"id":"E-jane","email":%q,"status":"terminated"}}`,
		now.Format(time.RFC3339), now.Add(2*time.Second).Format(time.RFC3339), who))
	if r := c.send("msg_trace_due", body); r.status != http.StatusAccepted {
		t.Fatalf("%d %v", r.status, r.body)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := sys.sandbox.Member(who); !ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := sys.sandbox.Member(who); ok {
		t.Fatal("the future-dated leaver was never applied")
	}
	var webhook trace.TraceID
	var scheduler trace.SpanContext // the consume that scheduled it
	var release tracetest.SpanStub
	eventually(t, "the release span", func() bool {
		for _, s := range exp.GetSpans() {
			if s.SpanKind == trace.SpanKindServer && s.Name == "POST /hooks/generic" {
				webhook = s.SpanContext.TraceID()
			}
			if s.Name == "release jml.events.generic.leaver" {
				release = s
			}
		}
		for _, s := range exp.GetSpans() {
			if s.SpanKind == trace.SpanKindConsumer && s.SpanContext.TraceID() == webhook && webhook.IsValid() {
				scheduler = s.SpanContext
			}
		}
		return webhook.IsValid() && release.Name != ""
	})
	if release.SpanContext.TraceID() == webhook {
		t.Fatal("the release runs in the webhook's trace; want a new trace with a link")
	}
	if len(release.Links) != 1 || release.Links[0].SpanContext.TraceID() != webhook || release.Links[0].SpanContext.SpanID() != scheduler.SpanID() {
		t.Fatalf("release links %+v, want one link to the consume span %s of trace %s", release.Links, scheduler.SpanID(), webhook)
	}
	// The convergence of the released change runs under the release.
	eventually(t, "the released change's removal in the release trace", func() bool {
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() == release.SpanContext.TraceID() && s.Name == "converge.remove_member" {
				return true
			}
		}
		return false
	})
}
