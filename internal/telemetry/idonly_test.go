package telemetry_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// TestNoExporterRecordsNothingButKeepsIDs: with no trace exporter, spans are
// not recorded, yet each has its own span id, children keep the trace id and
// the parent's flags, a root is not sampled (nothing was recorded), a new
// root gets a new trace, and the log handler still writes the ids.
func TestNoExporterRecordsNothingButKeepsIDs(t *testing.T) {
	ctx := context.Background()
	for _, exp := range []string{"", "none"} {
		tel, err := telemetry.New(ctx, telemetry.Options{TracesExporter: exp})
		if err != nil {
			t.Fatal(err)
		}
		tr := tel.TracerProvider.Tracer("t")
		rctx, root := tr.Start(ctx, "root")
		rsc := root.SpanContext()
		if root.IsRecording() || !rsc.IsValid() || rsc.IsSampled() {
			t.Fatalf("exporter %q: root recording=%v valid=%v sampled=%v; want a valid, unsampled, non-recording span",
				exp, root.IsRecording(), rsc.IsValid(), rsc.IsSampled())
		}
		cctx, child := tr.Start(rctx, "child")
		csc := child.SpanContext()
		if csc.TraceID() != rsc.TraceID() || csc.SpanID() == rsc.SpanID() || !csc.SpanID().IsValid() {
			t.Fatalf("child %s/%s of root %s/%s: want the root's trace and a span id of its own", csc.TraceID(), csc.SpanID(), rsc.TraceID(), rsc.SpanID())
		}
		if !trace.SpanFromContext(cctx).SpanContext().Equal(csc) {
			t.Fatal("the child's context does not carry the child")
		}
		_, fresh := tr.Start(cctx, "release", trace.WithNewRoot())
		if fresh.SpanContext().TraceID() == rsc.TraceID() {
			t.Fatal("WithNewRoot kept the parent's trace")
		}

		// A sampled remote parent (a caller that records) stays sampled: this
		// process is transparent to the trace it passes on.
		prop := propagation.TraceContext{}
		h := http.Header{}
		h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		pctx := prop.Extract(ctx, propagation.HeaderCarrier(h))
		sctx, srv := tr.Start(pctx, "server")
		if sc := srv.SpanContext(); sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !sc.IsSampled() || sc.SpanID().String() == "00f067aa0ba902b7" {
			t.Fatalf("under a sampled remote parent: %s/%s sampled=%v", sc.TraceID(), sc.SpanID(), sc.IsSampled())
		}
		out := http.Header{}
		prop.Inject(sctx, propagation.HeaderCarrier(out))
		if tp := out.Get("traceparent"); !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(tp, "-01") {
			t.Fatalf("propagated %q", tp)
		}

		var buf bytes.Buffer
		log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil)))
		log.InfoContext(cctx, "hello")
		if !strings.Contains(buf.String(), `"trace_id":"`+rsc.TraceID().String()+`"`) || !strings.Contains(buf.String(), `"span_id":"`+csc.SpanID().String()+`"`) {
			t.Fatalf("log line lacks the ids: %s", buf.String())
		}
		if err := tel.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// With an exporter the same spans are recorded and sampled.
	var console bytes.Buffer
	tel, err := telemetry.New(ctx, telemetry.Options{TracesExporter: "console", Console: &console, Synchronous: true})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider.Tracer("t").Start(ctx, "exported")
	if !span.IsRecording() || !span.SpanContext().IsSampled() {
		t.Fatal("with a console exporter the span is not recorded and sampled")
	}
	span.End()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(console.String(), `"Name":"exported"`) {
		t.Fatalf("console got no span: %q", console.String())
	}
}
