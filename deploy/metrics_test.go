package deploy

// metricKind is the Prometheus type of a known metric family.
type metricKind int

const (
	counter metricKind = iota
	gauge
	histogram
	summary
)

// knownMetric is one metric family the dashboard and alerts may use.
type knownMetric struct {
	kind metricKind
	// instrument is the OpenTelemetry instrument name and pkg the directory whose
	// non-test sources create it; empty for planned metrics and for families that
	// come from libraries (otelhttp, the Go and process collectors, Prometheus).
	instrument, pkg string
	// unit is the instrument unit when the code sets one.
	unit string
	// planned: named in the issue, not exported yet. Dashboards show "No data".
	planned bool
	// required: a panel must show it.
	required bool
}

// knownMetrics are the Prometheus names as the OTel Prometheus exporter (without
// scope info; counters get _total, unit "s" gives _seconds) writes them.
var knownMetrics = map[string]knownMetric{
	// receiver
	"jml_events_received_total":    {kind: counter, instrument: "jml_events_received", pkg: "internal/handlers/receiver", required: true},
	"jml_publish_duration_seconds": {kind: histogram, instrument: "jml_publish_duration_seconds", pkg: "internal/handlers/receiver", unit: "s", required: true},
	// worker
	"jml_convergence_total":      {kind: counter, instrument: "jml_convergence", pkg: "internal/handlers/worker", required: true},
	"jml_time_to_revoke_seconds": {kind: histogram, instrument: "jml_time_to_revoke_seconds", pkg: "internal/handlers/worker", unit: "s", required: true},
	"jml_dlq_messages_total":     {kind: counter, instrument: "jml_dlq_messages", pkg: "internal/handlers/worker", required: true},
	// Sentry client
	"sentry_client_requests_total":          {kind: counter, instrument: "sentry.client.requests", pkg: "internal/sentry", required: true},
	"sentry_client_retries_total":           {kind: counter, instrument: "sentry.client.retries", pkg: "internal/sentry", required: true},
	"sentry_client_rate_limit_wait_seconds": {kind: histogram, instrument: "sentry.client.rate_limit.wait", pkg: "internal/sentry", unit: "s", required: true},
	// alerts
	"jml_alerts_total": {kind: counter, instrument: "jml_alerts", pkg: "internal/alert", required: true},
	// planned (issue 8 and the convergence issues)
	"jml_unresolved_events_total":     {kind: counter, planned: true, required: true},
	"jml_consumer_pending":            {kind: gauge, planned: true, required: true},
	"jml_consumer_redelivered_total":  {kind: counter, planned: true, required: true},
	"jml_brakes_halted_total":         {kind: counter, planned: true, required: true},
	"jml_needs_human_total":           {kind: counter, planned: true, required: true},
	"jml_disputed_total":              {kind: counter, planned: true, required: true},
	"jml_due_queue_size":              {kind: gauge, planned: true, required: true},
	"jml_invite_backlog":              {kind: gauge, planned: true, required: true},
	"jml_dlq_depth":                   {kind: gauge, planned: true, required: true},
	"jml_org_token_expiry_seconds":    {kind: gauge, planned: true, required: true},
	"jml_sentry_rate_limit_remaining": {kind: gauge, planned: true, required: true},
	// otelhttp (receiver server side, Sentry client side)
	"http_server_request_duration_seconds": {kind: histogram, required: true},
	"http_client_request_duration_seconds": {kind: histogram, required: true},
	// Go and process collectors
	"go_goroutines":                 {kind: gauge, required: true},
	"go_memstats_heap_inuse_bytes":  {kind: gauge, required: true},
	"go_gc_duration_seconds":        {kind: summary},
	"process_cpu_seconds_total":     {kind: counter, required: true},
	"process_resident_memory_bytes": {kind: gauge},
	// Prometheus itself
	"up": {kind: gauge, required: true},
}

// lookupMetric resolves a name used in PromQL, allowing histogram/summary series suffixes.
func lookupMetric(name string) (string, bool) {
	if _, ok := knownMetrics[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := cutSuffix(name, suf)
		if !ok {
			continue
		}
		if m, ok := knownMetrics[base]; ok && (m.kind == histogram || (m.kind == summary && suf != "_bucket")) {
			return base, true
		}
	}
	return "", false
}

func cutSuffix(s, suf string) (string, bool) {
	if len(s) > len(suf) && s[len(s)-len(suf):] == suf {
		return s[:len(s)-len(suf)], true
	}
	return s, false
}
