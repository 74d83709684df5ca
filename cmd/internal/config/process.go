package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/internal/natsconn"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// Logger returns the JSON slog logger with trace ids for level.
func Logger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})))
}

// Telemetry builds providers from the standard OTEL_* variables, with the
// spec's default exporter for traces (otlp) when OTEL_TRACES_EXPORTER is unset.
func Telemetry(ctx context.Context, defaultName string) (*telemetry.Telemetry, error) {
	o, err := TelemetryOptions(os.Getenv, defaultName, "otlp")
	if err != nil {
		return nil, err
	}
	o.Console = os.Stdout
	return telemetry.New(ctx, o)
}

// TelemetryOptions maps the OpenTelemetry SDK environment variables to
// telemetry.Options: OTEL_TRACES_EXPORTER (a list; defaultTraces when unset),
// OTEL_METRICS_EXPORTER (a list; prometheus when unset: /metrics is always
// served), OTEL_EXPORTER_OTLP_PROTOCOL and its per-signal forms,
// OTEL_PROPAGATORS and OTEL_SDK_DISABLED. OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES are read by the SDK's resource detector, which keeps
// their service.name; defaultName applies only when they name none.
func TelemetryOptions(getenv func(string) string, defaultName, defaultTraces string) (telemetry.Options, error) {
	o := telemetry.Options{
		ServiceName:         defaultName,
		TracesExporter:      getenv("OTEL_TRACES_EXPORTER"),
		MetricsExporter:     getenv("OTEL_METRICS_EXPORTER"),
		OTLPProtocol:        getenv("OTEL_EXPORTER_OTLP_PROTOCOL"),
		OTLPTracesProtocol:  getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
		OTLPMetricsProtocol: getenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"),
		Propagators:         getenv("OTEL_PROPAGATORS"),
	}
	if strings.TrimSpace(o.TracesExporter) == "" {
		o.TracesExporter = defaultTraces
	}
	// The spec: only "true" (case-insensitive) disables; every other value,
	// empty included, is false.
	o.Disabled = strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true")
	return o, nil
}

// FlushTelemetry flushes and stops tel within 5 s on a context of its own
// (the process's is done by the time it runs): defer it after Telemetry.
func FlushTelemetry(tel *telemetry.Telemetry) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tel.Shutdown(ctx)
}

// ConnectNATS connects to JML_NATS_URL with the daemon's connection options
// (natsconn: reconnect forever with backoff and jitter, every disconnect,
// reconnect and close logged with its reason, never the credentials).
func (c Common) ConnectNATS(name string, log *slog.Logger) (*nats.Conn, error) {
	if c.NatsURL == "" {
		return nil, errors.New("config: JML_NATS_URL is required (e.g. nats://nats:4222)")
	}
	nc, err := nats.Connect(c.NatsURL, natsconn.Options(natsconn.Config{Name: name, Logger: log})...)
	if err != nil {
		return nil, fmt.Errorf("JML_NATS_URL: %w", err)
	}
	log.Info("nats connected", "url", nc.ConnectedUrlRedacted())
	return nc, nil
}

// Serve runs h on addr until ctx ends, then shuts down within 15 s.
func Serve(ctx context.Context, addr, envName string, h http.Handler) (string, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("%s=%s: %w", envName, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr().String(), done, nil
}
