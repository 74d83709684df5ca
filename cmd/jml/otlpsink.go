package main

import (
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpSink is the local OTLP/HTTP receiver of `jml bench … --otlp`: it
// accepts what the exporters send, counts spans and metric exports, and
// answers like a collector, so the benchmarks pay the export cost.
type otlpSink struct {
	srv           *http.Server
	url           string
	spans         atomic.Int64
	metricExports atomic.Int64
	bad           atomic.Int64
}

func startOTLPSink() (*otlpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{url: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		var req coltracepb.ExportTraceServiceRequest
		if !s.read(w, r, &req) {
			return
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				s.spans.Add(int64(len(ss.Spans)))
			}
		}
		s.reply(w, &coltracepb.ExportTraceServiceResponse{})
	})
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		var req colmetricpb.ExportMetricsServiceRequest
		if !s.read(w, r, &req) {
			return
		}
		s.metricExports.Add(1)
		s.reply(w, &colmetricpb.ExportMetricsServiceResponse{})
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *otlpSink) read(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			s.bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return false
		}
		defer zr.Close()
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err == nil {
		err = proto.Unmarshal(b, m)
	}
	if err != nil {
		s.bad.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (s *otlpSink) reply(w http.ResponseWriter, m proto.Message) {
	b, _ := proto.Marshal(m)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

// env points the OpenTelemetry SDK of this process (and of children given
// these variables) at the sink.
func (s *otlpSink) env() []string {
	return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + s.url, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_METRIC_EXPORT_INTERVAL=1000", "OTEL_TRACES_EXPORTER=otlp", "OTEL_METRICS_EXPORTER=otlp"}
}

// setEnv applies env to this process (the exporters read OTEL_* at start).
func (s *otlpSink) setEnv() {
	for _, kv := range s.env() {
		k, v, _ := strings.Cut(kv, "=")
		_ = os.Setenv(k, v)
	}
}

func (s *otlpSink) close() { _ = s.srv.Close() }

// otlpResult is the part of a bench result that reports the OTLP export.
type otlpResult struct {
	OTLP              bool  `json:"otlp"`
	OTLPSpans         int64 `json:"otlp_spans,omitempty"`
	OTLPMetricExports int64 `json:"otlp_metric_exports,omitempty"`
}

// result counts what arrived (call after the exporters flushed).
func (s *otlpSink) result() otlpResult {
	return otlpResult{OTLP: true, OTLPSpans: s.spans.Load(), OTLPMetricExports: s.metricExports.Load()}
}
