// Package telemetry builds the OpenTelemetry tracer and meter providers, the
// Prometheus /metrics handler, the W3C propagator and a log/slog handler that adds
// trace_id and span_id to every record. Processes get one Telemetry from cmd/* and
// pass its providers down; nothing here is global except what cmd installs with
// otel.Set*. It must not import the daemon's domain packages.
package telemetry
