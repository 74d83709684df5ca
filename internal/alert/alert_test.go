package alert_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sentry-jml/sentry-jml/internal/alert"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
)

// request is what a test receiver saw.
type request struct {
	header http.Header
	body   []byte
}

// receiver is an httptest server that records requests and answers with the
// statuses in script (then 200).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []request
	script []int
}

func newReceiver(t *testing.T, script ...int) *receiver {
	t.Helper()
	r := &receiver{script: script}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, request{header: req.Header.Clone(), body: b})
		status := http.StatusOK
		if len(r.script) > 0 {
			status, r.script = r.script[0], r.script[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metrics reads jml_alerts data points as "kind/sink/outcome" → value.
func metrics(t *testing.T, rd *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "jml_alerts" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				get := func(k string) string { v, _ := dp.Attributes.Value(attribute.Key(k)); return v.AsString() }
				out[get("kind")+"/"+get("sink")+"/"+get("outcome")] += dp.Value
			}
		}
	}
	return out
}

type harness struct {
	n      *alert.Notifier
	reader *sdkmetric.ManualReader
	logs   *syncBuffer
}

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

func mustNotifier(t *testing.T, o alert.Options) harness {
	t.Helper()
	h := harness{reader: sdkmetric.NewManualReader(), logs: &syncBuffer{}}
	o.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	o.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.BackoffMin == 0 {
		o.BackoffMin, o.BackoffMax = time.Millisecond, 5*time.Millisecond
	}
	n, err := alert.New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.n = n
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

func mustWebhook(t *testing.T, url string, secrets ...string) *alert.Webhook {
	t.Helper()
	w, err := alert.NewWebhook(url, secrets, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustSlack(t *testing.T, url string) *alert.Slack {
	t.Helper()
	s, err := alert.NewSlack(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var at = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func leaverAlert() alert.Alert {
	return alert.Alert{Kind: alert.KindNeedsHuman, Summary: "jane@acme.com is an Owner; the service user cannot remove her",
		Person: "jane@acme.com", Details: map[string]string{"member_id": "42", "org_role": "owner"}, At: at}
}

func TestWebhookSignatureVerifies(t *testing.T) {
	rcv := newReceiver(t)
	h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{mustWebhook(t, rcv.URL+"/alerts", secretA, secretB)}})
	if err := h.n.Notify(context.Background(), leaverAlert()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one request", func() bool { return len(rcv.requests()) == 1 })
	req := rcv.requests()[0]

	// Each active secret alone verifies (rotation): real verification, not trust.
	for _, s := range []string{secretA, secretB} {
		v, err := signature.NewStandardWebhooks([]string{s}, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(req.header.Get("webhook-id"), req.header.Get("webhook-timestamp"), req.header.Get("webhook-signature"), req.body); err != nil {
			t.Errorf("verify with %s…: %v", s[:10], err)
		}
	}
	// A tampered body or another secret does not.
	v, _ := signature.NewStandardWebhooks([]string{"whsec_" + "dGhpcyBpcyBub3QgdGhlIHNlY3JldA=="}, 0, nil)
	if err := v.Verify(req.header.Get("webhook-id"), req.header.Get("webhook-timestamp"), req.header.Get("webhook-signature"), req.body); !errors.Is(err, signature.ErrNoMatchingSignature) {
		t.Errorf("wrong secret: err = %v, want ErrNoMatchingSignature", err)
	}
	v, _ = signature.NewStandardWebhooks([]string{secretA}, 0, nil)
	tampered := bytes.Replace(req.body, []byte("owner"), []byte("admin"), 1)
	if err := v.Verify(req.header.Get("webhook-id"), req.header.Get("webhook-timestamp"), req.header.Get("webhook-signature"), tampered); err == nil {
		t.Error("tampered body verified")
	}

	if !strings.HasPrefix(req.header.Get("webhook-id"), "msg_") || req.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", req.header)
	}
	var p alert.WebhookPayload
	if err := json.Unmarshal(req.body, &p); err != nil {
		t.Fatal(err)
	}
	want := alert.WebhookPayload{Type: "jml.alert.needs_human", Timestamp: at, Data: alert.WebhookData{Kind: alert.KindNeedsHuman,
		Severity: alert.SeverityWarning, Summary: leaverAlert().Summary, Person: "jane@acme.com", Details: leaverAlert().Details, At: at}}
	if p.Type != want.Type || !p.Timestamp.Equal(want.Timestamp) || p.Data.Kind != want.Data.Kind || p.Data.Severity != want.Data.Severity ||
		p.Data.Summary != want.Data.Summary || p.Data.Person != want.Data.Person || p.Data.Details["member_id"] != "42" || !p.Data.At.Equal(at) {
		t.Errorf("payload = %+v, want %+v", p, want)
	}
	if bytes.Contains(req.body, []byte("whsec_")) {
		t.Error("payload contains a secret")
	}
	if got := metrics(t, h.reader)["needs_human/webhook/sent"]; got != 1 {
		t.Errorf("sent = %d, want 1", got)
	}
}

func TestSlackPayloadShape(t *testing.T) {
	rcv := newReceiver(t)
	h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{mustSlack(t, rcv.URL+"/services/T000/B000/XXXX")}})
	a := alert.Alert{Kind: alert.KindBrakeHalted, Summary: "40 removals in a minute > 30: halted <approve with jml approve> & wait",
		Details: map[string]string{"plan": "p-1", "removals": "40", "threshold": "30"}, At: at}
	for i := range 12 { // more details than Slack allows fields
		a.Details["d"+string(rune('a'+i))] = "v"
	}
	if err := h.n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one request", func() bool { return len(rcv.requests()) == 1 })
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Fields []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"fields"`
			Elements []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	dec := json.NewDecoder(bytes.NewReader(rcv.requests()[0].body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&msg); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg.Text, "[critical] brake_halted: 40 removals") {
		t.Errorf("text = %q", msg.Text)
	}
	var types []string
	for _, b := range msg.Blocks {
		types = append(types, b.Type)
	}
	if got := strings.Join(types, ","); got != "header,section,section,context" {
		t.Fatalf("block types = %s", got)
	}
	hdr, sec := msg.Blocks[0], msg.Blocks[1]
	if hdr.Text.Type != "plain_text" || len([]rune(hdr.Text.Text)) > 150 {
		t.Errorf("header = %+v", hdr.Text)
	}
	if sec.Text.Type != "mrkdwn" || !strings.Contains(sec.Text.Text, "&lt;approve with jml approve&gt; &amp; wait") {
		t.Errorf("section text not escaped: %q", sec.Text.Text)
	}
	if len(sec.Fields) != 10 {
		t.Errorf("fields = %d, want Slack's maximum 10", len(sec.Fields))
	}
	if sec.Fields[0].Text != "*Kind*\nbrake_halted" || sec.Fields[1].Text != "*Severity*\ncritical" {
		t.Errorf("first fields = %+v", sec.Fields[:2])
	}
	if !strings.Contains(msg.Blocks[2].Text.Text, "*threshold*: 30") {
		t.Errorf("overflow section = %q", msg.Blocks[2].Text.Text)
	}
	if len(msg.Blocks[3].Elements) != 1 || !strings.Contains(msg.Blocks[3].Elements[0].Text, "2026-11-28T10:00:00Z") {
		t.Errorf("context = %+v", msg.Blocks[3].Elements)
	}
}

func TestRetryOn503(t *testing.T) {
	rcv := newReceiver(t, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{mustWebhook(t, rcv.URL, secretA)}})
	if err := h.n.Notify(context.Background(), leaverAlert()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "sent", func() bool { return metrics(t, h.reader)["needs_human/webhook/sent"] == 1 })
	reqs := rcv.requests()
	if len(reqs) != 3 {
		t.Fatalf("attempts = %d, want 3 (503, 503, 200)", len(reqs))
	}
	v, _ := signature.NewStandardWebhooks([]string{secretA}, 0, nil)
	for i, r := range reqs {
		if r.header.Get("webhook-id") != reqs[0].header.Get("webhook-id") {
			t.Errorf("attempt %d: webhook-id changed across retries", i+1)
		}
		if err := v.Verify(r.header.Get("webhook-id"), r.header.Get("webhook-timestamp"), r.header.Get("webhook-signature"), r.body); err != nil {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
}

func TestNoRetryOnPermanentAndGiveUp(t *testing.T) {
	t.Run("ErrPermanent400", func(t *testing.T) {
		rcv := newReceiver(t, http.StatusBadRequest)
		h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{mustSlack(t, rcv.URL)}})
		_ = h.n.Notify(context.Background(), leaverAlert())
		waitFor(t, "failed", func() bool { return metrics(t, h.reader)["needs_human/slack/failed"] == 1 })
		if n := len(rcv.requests()); n != 1 {
			t.Errorf("attempts = %d, want 1", n)
		}
	})
	t.Run("ErrMaxAttempts", func(t *testing.T) {
		rcv := newReceiver(t, 500, 502, 503, 504, 500)
		h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{mustSlack(t, rcv.URL)}, MaxAttempts: 3})
		_ = h.n.Notify(context.Background(), leaverAlert())
		waitFor(t, "failed", func() bool { return metrics(t, h.reader)["needs_human/slack/failed"] == 1 })
		if n := len(rcv.requests()); n != 3 {
			t.Errorf("attempts = %d, want 3", n)
		}
	})
}

// gateSink blocks every Send until released.
type gateSink struct {
	gate    chan struct{}
	entered atomic.Int64
	sends   atomic.Int64
}

func (g *gateSink) Name() string { return "gate" }
func (g *gateSink) Send(ctx context.Context, _ string, _ alert.Alert) error {
	g.entered.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.sends.Add(1)
	return nil
}

func TestQueueOverflowDropsAndCounts(t *testing.T) {
	g := &gateSink{gate: make(chan struct{})}
	rcv := newReceiver(t)
	h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{g, mustWebhook(t, rcv.URL, secretA)}, QueueSize: 2, AttemptTimeout: time.Minute})
	notify := func(i int) error {
		a := leaverAlert()
		a.Summary = "alert " + string(rune('A'+i))
		return h.n.Notify(context.Background(), a)
	}
	// The first alert is taken by the delivery goroutine and blocks there.
	if err := notify(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first in flight", func() bool { return len(rcv.requests()) == 1 && g.entered.Load() == 1 })
	var dropped int
	for i := 1; i <= 10; i++ {
		start := time.Now()
		if err := notify(i); errors.Is(err, alert.ErrQueueFull) {
			dropped++
		} else if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Notify blocked for %v behind a stuck sink", d)
		}
		// The healthy sink keeps up: each alert reaches it although the other is stuck.
		waitFor(t, "webhook delivery", func() bool { return len(rcv.requests()) == i+1 })
	}
	if dropped != 8 { // 1 in flight, 2 queued, 8 dropped
		t.Errorf("dropped = %d, want 8", dropped)
	}
	m := metrics(t, h.reader)
	if m["needs_human/gate/dropped"] != 8 || m["needs_human/webhook/dropped"] != 0 {
		t.Errorf("metrics = %v", m)
	}
	close(g.gate)
	waitFor(t, "gate sink drained", func() bool { return g.sends.Load() == 3 })
	if !strings.Contains(h.logs.String(), "alert dropped") {
		t.Error("drop not logged")
	}
}

func TestDedupeWindow(t *testing.T) {
	rcv := newReceiver(t)
	var mu sync.Mutex
	now := at
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{mustSlack(t, rcv.URL)}, DedupeWindow: 10 * time.Minute, Now: clock})
	ctx := context.Background()

	a := leaverAlert()
	a.At = time.Time{} // filled from the clock
	must := func(a alert.Alert) {
		t.Helper()
		if err := h.n.Notify(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	must(a)
	advance(time.Minute)
	later := a
	later.At = now.Add(time.Second) // At does not count
	must(later)
	other := leaverAlert()
	other.Details = map[string]string{"member_id": "43"} // different details: not a duplicate
	must(other)
	advance(10 * time.Minute) // past the window since the first
	must(a)

	waitFor(t, "three deliveries", func() bool { return len(rcv.requests()) == 3 })
	time.Sleep(20 * time.Millisecond)
	if n := len(rcv.requests()); n != 3 {
		t.Errorf("deliveries = %d, want 3", n)
	}
	if got := metrics(t, h.reader)["needs_human//deduplicated"]; got != 1 {
		t.Errorf("deduplicated = %d, want 1", got)
	}
}

func TestNoSecretInPayloadOrLogs(t *testing.T) {
	const (
		token   = "sntryu_0123456789abcdef0123456789abcdef"
		hookURL = "/services/T0001/B0001/s3cr3tPathPart"
	)
	rcv := newReceiver(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + hookURL
	dead.Close() // connection refused: the error must not carry the URL
	h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{mustWebhook(t, rcv.URL, secretA), mustSlack(t, deadURL)}, MaxAttempts: 2})
	a := alert.Alert{Kind: alert.KindTokenRejected, Summary: "Sentry answered 401 to token " + token + " (Authorization: Bearer abc123def456)",
		Details: map[string]string{"sentry_token": "anything", "status": "401", "header": "Bearer " + token, "hint": "rotate " + secretB,
			"dsn": "https://user:pa55@example.com/1"}, At: at}
	if err := h.n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slack failed", func() bool { return metrics(t, h.reader)["token_rejected/slack/failed"] == 1 })
	waitFor(t, "webhook sent", func() bool { return len(rcv.requests()) == 1 })
	body := string(rcv.requests()[0].body)
	logs := h.logs.String()
	for _, leak := range []string{token, "anything", "abc123def456", secretB, "pa55", "s3cr3tPathPart", secretA} {
		if strings.Contains(body, leak) {
			t.Errorf("payload contains %q: %s", leak, body)
		}
		if strings.Contains(logs, leak) {
			t.Errorf("logs contain %q: %s", leak, logs)
		}
	}
	if !strings.Contains(body, `"status":"401"`) || !strings.Contains(body, "[redacted]") {
		t.Errorf("payload lost plain details or has no redaction marker: %s", body)
	}
	if !strings.Contains(logs, "alert not delivered") {
		t.Errorf("failure not logged: %s", logs)
	}
}

func TestNotifyErrors(t *testing.T) {
	rcv := newReceiver(t)
	n, err := alert.New(alert.Options{Sinks: []alert.Sink{mustSlack(t, rcv.URL)}})
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]alert.Alert{
		"ErrUnknownKind":     {Kind: "bogus", Summary: "x"},
		"ErrEmptySummary":    {Kind: alert.KindDisputed, Summary: " "},
		"ErrUnknownSeverity": {Kind: alert.KindDisputed, Severity: "loud", Summary: "x"},
	} {
		if err := n.Notify(context.Background(), a); !errors.Is(err, alert.ErrInvalidAlert) {
			t.Errorf("%s: err = %v, want ErrInvalidAlert", name, err)
		}
	}
	if err := n.Notify(context.Background(), alert.Alert{Kind: alert.KindDLQGrowth, Summary: "3 new dead letters"}); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rcv.requests()) != 1 {
		t.Errorf("Close did not drain the queue: %d requests", len(rcv.requests()))
	}
	if err := n.Notify(context.Background(), alert.Alert{Kind: alert.KindDLQGrowth, Summary: "more"}); !errors.Is(err, alert.ErrClosed) {
		t.Errorf("after Close: err = %v, want ErrClosed", err)
	}
}

func TestConstructorErrors(t *testing.T) {
	if _, err := alert.NewSlack("hooks.slack.com/services/x", nil); err == nil || strings.Contains(err.Error(), "services/x") {
		t.Errorf("relative URL: err = %v (must fail without echoing the URL)", err)
	}
	if _, err := alert.NewWebhook("https://example.com/a", nil, nil, nil); err == nil {
		t.Error("webhook without secret accepted")
	}
	if _, err := alert.NewWebhook("https://example.com/a", []string{"whsec_!!!notbase64"}, nil, nil); err == nil || strings.Contains(err.Error(), "notbase64") {
		t.Errorf("bad secret: err = %v", err)
	}
	s := mustSlack(t, "https://example.com/x")
	if _, err := alert.New(alert.Options{Sinks: []alert.Sink{s, s}}); err == nil {
		t.Error("two sinks with one name accepted")
	}
}

func TestSeriesExportedAtZeroFromStart(t *testing.T) {
	h := mustNotifier(t, alert.Options{Sinks: []alert.Sink{mustWebhook(t, "https://alerts.example.com/hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")}})
	got := metrics(t, h.reader)
	for _, k := range alert.Kinds {
		for _, key := range []string{string(k) + "/webhook/sent", string(k) + "/webhook/failed", string(k) + "/webhook/dropped", string(k) + "//deduplicated"} {
			if v, ok := got[key]; !ok || v != 0 {
				t.Errorf("%s = %d, %v; want 0 before any alert", key, v, ok)
			}
		}
	}
}
