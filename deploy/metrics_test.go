package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/signature"
)

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
	// non-test sources create it; empty for families that come from libraries
	// (otelhttp, the Go and process collectors, Prometheus).
	instrument, pkg string
	// required: a panel must show it.
	required bool
}

// knownMetrics are the Prometheus names as the OTel Prometheus exporter (without
// scope info; counters get _total, unit "s" gives _seconds) writes them. Every one
// is checked against the live /metrics of a running `jml run` (TestLiveMetrics).
func knownMetrics() map[string]knownMetric {
	return map[string]knownMetric{
		// receiver
		"jml_events_received_total":    {kind: counter, instrument: "jml_events_received", pkg: "internal/handlers/receiver", required: true},
		"jml_publish_duration_seconds": {kind: histogram, instrument: "jml_publish_duration_seconds", pkg: "internal/handlers/receiver", required: true},
		// worker
		"jml_convergence_total":          {kind: counter, instrument: "jml_convergence", pkg: "internal/handlers/worker", required: true},
		"jml_time_to_revoke_seconds":     {kind: histogram, instrument: "jml_time_to_revoke_seconds", pkg: "internal/handlers/worker", required: true},
		"jml_dlq_messages_total":         {kind: counter, instrument: "jml_dlq_messages", pkg: "internal/handlers/worker", required: true},
		"jml_unresolved_events_total":    {kind: counter, instrument: "jml_unresolved_events", pkg: "internal/handlers/worker", required: true},
		"jml_consumer_redelivered_total": {kind: counter, instrument: "jml_consumer_redelivered", pkg: "internal/handlers/worker", required: true},
		"jml_consumer_pending":           {kind: gauge, instrument: "jml_consumer_pending", pkg: "internal/handlers/worker", required: true},
		"jml_dlq_depth":                  {kind: gauge, instrument: "jml_dlq_depth", pkg: "internal/handlers/worker", required: true},
		"jml_due_queue_size":             {kind: gauge, instrument: "jml_due_queue_size", pkg: "internal/handlers/worker", required: true},
		// worker process (internal/app): evidence-counted outcomes and job-fed gauges
		"jml_needs_human_total":        {kind: counter, instrument: "jml_needs_human", pkg: "internal/app", required: true},
		"jml_disputed_total":           {kind: counter, instrument: "jml_disputed", pkg: "internal/app", required: true},
		"jml_invite_backlog":           {kind: gauge, instrument: "jml_invite_backlog", pkg: "internal/app", required: true},
		"jml_org_token_expiry_seconds": {kind: gauge, instrument: "jml_org_token_expiry_seconds", pkg: "internal/app", required: true},
		// pause and brakes (the safety gate)
		"jml_brakes_halted_total": {kind: counter, instrument: "jml_brakes_halted", pkg: "internal/safety", required: true},
		"jml_paused":              {kind: gauge, instrument: "jml_paused", pkg: "internal/safety", required: true},
		"jml_brakes_held":         {kind: gauge, instrument: "jml_brakes_held", pkg: "internal/safety", required: true},
		// Sentry client
		"sentry_client_requests_total":          {kind: counter, instrument: "sentry.client.requests", pkg: "internal/sentry", required: true},
		"sentry_client_retries_total":           {kind: counter, instrument: "sentry.client.retries", pkg: "internal/sentry", required: true},
		"sentry_client_rate_limit_wait_seconds": {kind: histogram, instrument: "sentry.client.rate_limit.wait", pkg: "internal/sentry", required: true},
		"jml_sentry_rate_limit_remaining":       {kind: gauge, instrument: "jml_sentry_rate_limit_remaining", pkg: "internal/sentry", required: true},
		// alerts
		"jml_alerts_total": {kind: counter, instrument: "jml_alerts", pkg: "internal/alert", required: true},

		"jml_audit_gaps_total":                  {kind: counter, instrument: "jml_audit_gaps", pkg: "internal/handlers/follow"},
		"jml_audit_last_poll_timestamp_seconds": {kind: gauge, instrument: "jml_audit_last_poll_timestamp_seconds", pkg: "internal/handlers/follow"},
		// otelhttp (receiver server side, Sentry client side)
		"http_server_request_duration_seconds": {kind: histogram, required: true},
		"http_client_request_duration_seconds": {kind: histogram, required: true},
		// Go and process collectors
		"go_goroutines":                 {kind: gauge, required: true},
		"go_memstats_heap_inuse_bytes":  {kind: gauge, required: true},
		"go_gc_duration_seconds":        {kind: summary},
		"process_cpu_seconds_total":     {kind: counter, required: true},
		"process_resident_memory_bytes": {kind: gauge},
		// Prometheus itself (the scrape's own series, never exported by a process)
		"up": {kind: gauge, required: true},
	}
}

// prometheusOwn are series Prometheus writes itself for every target.
func prometheusOwn() []string { return []string{"up"} }

// firstObservation are histograms: OpenTelemetry cannot export a histogram
// series before its first recording (there is no zero observation), so each
// appears with the first event through the running instance: a webhook
// request (http_server_*, jml_publish_*), a removal (jml_time_to_revoke_*).
// TestLiveMetrics sends one signed leaver and checks them after it.
func firstObservation() []string {
	return []string{"http_server_request_duration_seconds", "jml_publish_duration_seconds", "jml_time_to_revoke_seconds"}
}

// lookupMetric resolves a name used in PromQL, allowing histogram/summary series suffixes.
func lookupMetric(name string) (string, bool) {
	known := knownMetrics()
	if _, ok := known[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		if m, ok := known[base]; ok && (m.kind == histogram || (m.kind == summary && suf != "_bucket")) {
			return base, true
		}
	}
	return "", false
}

// TestKnownMetricsInSource: each instrument still appears in the package that
// creates it (a renamed instrument fails here before it fails live).
func TestKnownMetricsInSource(t *testing.T) {
	for name, k := range knownMetrics() {
		if k.instrument == "" {
			continue
		}
		if src := sourceText(t, path(k.pkg)); !strings.Contains(src, strconv.Quote(k.instrument)) {
			t.Errorf("%s: %s no longer creates instrument %q", name, k.pkg, k.instrument)
		}
	}
}

// deployMetricNames returns every metric name the alert rules and the dashboard
// use, each with where it is used.
func deployMetricNames(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	var rf ruleFile
	mustYAML(t, path("deploy", "compose", "prometheus", "alerts.yml"), &rf)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			for _, n := range metricNames(r.Expr) {
				used[n] = append(used[n], "alert "+r.Alert+r.Record)
			}
		}
	}
	_, panels := dashboard(t)
	for _, p := range panels {
		for _, tg := range p.Targets {
			for _, n := range metricNames(tg.Expr) {
				used[n] = append(used[n], fmt.Sprintf("panel %d %q", p.ID, p.Title))
			}
		}
	}
	if len(used) < 20 {
		t.Fatalf("found only %d metric names in the rules and the dashboard: %v", len(used), used)
	}
	return used
}

// scrape is one /metrics page: family name → Prometheus type.
type scrape map[string]string

func parseScrape(body string) scrape {
	s := scrape{}
	for _, line := range strings.Split(body, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if fs := strings.Fields(f); len(fs) == 2 {
				s[fs[0]] = fs[1]
			}
		}
	}
	return s
}

// has reports whether a PromQL name is served: a family, or a histogram's
// _bucket/_sum/_count, or a summary's _sum/_count.
func (s scrape) has(name string) bool {
	if _, ok := s[name]; ok {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			switch s[base] {
			case "histogram":
				return true
			case "summary":
				return suf != "_bucket"
			}
		}
	}
	return false
}

func TestScrapeResolvesSuffixes(t *testing.T) {
	s := parseScrape("# HELP a x\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 0\n# TYPE b summary\n# TYPE c_total counter\n")
	for name, want := range map[string]bool{"a_seconds_bucket": true, "a_seconds_count": true, "a_seconds": true, "b_sum": true, "b_bucket": false,
		"c_total": true, "c_total_count": false, "d": false} {
		if got := s.has(name); got != want {
			t.Errorf("has(%s) = %v, want %v", name, got, want)
		}
	}
}

// instance is a running `jml run` (all-in-one: receiver, worker, scheduler,
// embedded NATS, the Sentry sandbox) on free ports with a temporary data dir.
type instance struct {
	dataDir, receiver, admin string
}

// startInstance builds cmd/jml and runs `jml run` until the test ends.
func startInstance(t *testing.T) instance {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jml")
	build := exec.Command("go", "build", "-o", bin, "./cmd/jml")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/jml: %v\n%s", err, out)
	}
	dataDir := t.TempDir()
	// An operator alert sink, as production configures one: jml_alerts_total
	// counts per sink (without a sink there is nothing to count).
	alerts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(alerts.Close)
	cmd := exec.Command(bin, "run")
	// A clean environment: the sandbox (no JML_SENTRY_*), embedded coordination,
	// no exporter but /metrics, every listener on a free port.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dataDir, "JML_DATA_DIR=" + dataDir,
		"JML_HTTP_ADDR=127.0.0.1:0", "JML_ADMIN_ADDR=127.0.0.1:0", "JML_SANDBOX_ADDR=127.0.0.1:0", "JML_LOG_LEVEL=warn",
		"JML_ALERT_WEBHOOK_URL=" + alerts.URL, "JML_ALERT_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	receiver := make(chan string, 1)
	var banner syncBuffer
	go func() {
		re := regexp.MustCompile(`webhook receiver\s+http://(\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			banner.Write([]byte(sc.Text() + "\n"))
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				receiver <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(25 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("jml run did not stop within 25 s of SIGINT")
		}
		if t.Failed() {
			t.Logf("jml run stdout:\n%s\nstderr:\n%s", banner.String(), logs.String())
		}
	})
	in := instance{dataDir: dataDir}
	select {
	case in.receiver = <-receiver:
	case <-time.After(90 * time.Second):
		t.Fatalf("jml run printed no banner in 90 s")
	}
	eventually(t, 60*time.Second, "the admin listener's address in "+dataDir, func() bool {
		b, err := os.ReadFile(filepath.Join(dataDir, "admin.addr"))
		in.admin = strings.TrimSpace(string(b))
		return err == nil && in.admin != ""
	})
	eventually(t, 60*time.Second, "GET /readyz on the admin listener answers 200", func() bool {
		code, _ := get("http://" + in.admin + "/readyz")
		return code == http.StatusOK
	})
	return in
}

func get(url string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sendLeaver posts one signed generic leaver to the instance's receiver.
func (in instance) sendLeaver(t *testing.T, email string) {
	t.Helper()
	secret, err := os.ReadFile(filepath.Join(in.dataDir, "generic.secret"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := signature.DecodeStandardSecret(strings.TrimSpace(string(secret)))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(fmt.Sprintf(`{"type":"leaver","occurred_at":%q,"person":{"email":%q,"status":"terminated"}}`, time.Now().UTC().Format(time.RFC3339), email))
	id, now := "msg_deploy_live_metrics", time.Now()
	req, err := http.NewRequest(http.MethodPost, "http://"+in.receiver+"/hooks/generic", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", signature.Sign(key, id, now, body))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /hooks/generic: %d %s", resp.StatusCode, b)
	}
}

// TestLiveMetrics runs `jml run` and checks every metric name that the alert
// rules and the dashboard use, and every family in knownMetrics, against its
// live /metrics on the admin listener: counters and gauges from the start
// (before any event), histograms once one signed leaver went through. Only
// `up` (Prometheus's own) is exempt. The public webhook port serves no /metrics.
func TestLiveMetrics(t *testing.T) {
	used := deployMetricNames(t)
	for n, where := range used {
		if _, ok := lookupMetric(n); !ok {
			t.Errorf("%s (used by %s) is not in knownMetrics", n, strings.Join(where, ", "))
		}
	}
	in := startInstance(t)
	if code, _ := get("http://" + in.receiver + "/metrics"); code != http.StatusNotFound {
		t.Errorf("GET /metrics on the public webhook port: %d, want 404 (served on the admin listener only)", code)
	}
	scrapeNow := func() scrape {
		code, body := get("http://" + in.admin + "/metrics")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics on the admin listener: %d %.200s", code, body)
		}
		return parseScrape(body)
	}
	deferred := map[string]bool{}
	for _, n := range firstObservation() {
		deferred[n] = true
	}
	names := map[string][]string{}
	for n, where := range used {
		names[n] = where
	}
	for n := range knownMetrics() {
		names[n] = append(names[n], "knownMetrics")
	}
	missing := func(s scrape, phase func(base string) bool) []string {
		var out []string
		for n, where := range names {
			base, _ := lookupMetric(n)
			if base == "" {
				base = n
			}
			if slices.Contains(prometheusOwn(), base) || !phase(base) || s.has(n) {
				continue
			}
			out = append(out, fmt.Sprintf("%s (%s)", n, strings.Join(where, ", ")))
		}
		sort.Strings(out)
		return out
	}
	// From the start: everything but the histograms that need a first event.
	// The job-fed gauges (invite backlog, token age) appear once the member
	// index is warm, which the scheduler starts immediately: allow a few seconds.
	atStart := func(base string) bool { return !deferred[base] }
	var s scrape
	deadline := time.Now().Add(20 * time.Second)
	for s = scrapeNow(); len(missing(s, atStart)) > 0 && time.Now().Before(deadline); s = scrapeNow() {
		time.Sleep(250 * time.Millisecond)
	}
	for _, m := range missing(s, atStart) {
		t.Errorf("not exported from the start: %s", m)
	}
	// After one leaver: the histograms too.
	in.sendLeaver(t, "jane.doe@acme.test")
	all := func(string) bool { return true }
	deadline = time.Now().Add(30 * time.Second)
	for s = scrapeNow(); !s.has("jml_time_to_revoke_seconds_count") && time.Now().Before(deadline); s = scrapeNow() {
		time.Sleep(250 * time.Millisecond)
	}
	for _, m := range missing(s, all) {
		t.Errorf("not exported after a leaver was removed: %s", m)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
