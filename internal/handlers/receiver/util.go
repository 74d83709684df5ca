package receiver

import (
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// instrumentationName is the scope of the receiver's spans and metrics.
const instrumentationName = "github.com/sentry-jml/sentry-jml/internal/handlers/receiver"

func meterOf(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(instrumentationName)
}
