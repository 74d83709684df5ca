package config

import "testing"

// TestTelemetryOptions: each OTEL_* variable reaches telemetry.Options; an
// unset OTEL_TRACES_EXPORTER takes the caller's default (otlp for the
// production processes, as the spec says; none for `jml run`).
func TestTelemetryOptions(t *testing.T) {
	env := map[string]string{
		"OTEL_TRACES_EXPORTER":                "otlp,console",
		"OTEL_METRICS_EXPORTER":               "otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL":         "grpc",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL":  "http/protobuf",
		"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
		"OTEL_PROPAGATORS":                    "b3",
		"OTEL_SDK_DISABLED":                   "TRUE",
	}
	o, err := TelemetryOptions(func(k string) string { return env[k] }, "sentry-jml-worker", "otlp")
	if err != nil {
		t.Fatal(err)
	}
	if o.TracesExporter != "otlp,console" || o.MetricsExporter != "otlp" || o.OTLPProtocol != "grpc" ||
		o.OTLPTracesProtocol != "http/protobuf" || o.OTLPMetricsProtocol != "grpc" || o.Propagators != "b3" ||
		!o.Disabled || o.ServiceName != "sentry-jml-worker" {
		t.Fatalf("options %+v", o)
	}
	none := func(string) string { return "" }
	if o, _ = TelemetryOptions(none, "w", "otlp"); o.TracesExporter != "otlp" || o.Disabled {
		t.Errorf("production default: %+v", o)
	}
	if o, _ = TelemetryOptions(none, "sentry-jml", "none"); o.TracesExporter != "none" {
		t.Errorf("jml run default: %+v", o)
	}
	env = map[string]string{"OTEL_SDK_DISABLED": "false"}
	if o, _ = TelemetryOptions(func(k string) string { return env[k] }, "w", "otlp"); o.Disabled {
		t.Error("OTEL_SDK_DISABLED=false disabled the SDK")
	}
	env = map[string]string{"OTEL_SDK_DISABLED": "1"}
	if o, _ = TelemetryOptions(func(k string) string { return env[k] }, "w", "otlp"); o.Disabled {
		t.Error(`OTEL_SDK_DISABLED=1 disabled the SDK (only "true" does)`)
	}
}
