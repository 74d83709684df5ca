package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// Webhook posts a generic JSON alert signed with Standard Webhooks
// (webhook-id, webhook-timestamp, webhook-signature). The webhook-id stays the
// same across retries of one alert so the receiver can deduplicate; the timestamp
// and signature are those of each attempt.
type Webhook struct {
	url  *url.URL
	keys [][]byte
	hc   *http.Client
	now  func() time.Time
}

var _ Sink = (*Webhook)(nil)

// NewWebhook returns a sink for endpoint signed with every secret in secrets
// ("whsec_<base64>"; several during rotation give several signatures). hc nil
// means a client with a 10 s timeout; now nil means time.Now.
func NewWebhook(endpoint string, secrets []string, hc *http.Client, now func() time.Time) (*Webhook, error) {
	u, err := checkURL("webhook", endpoint)
	if err != nil {
		return nil, err
	}
	if len(secrets) == 0 {
		return nil, errors.New("alert: webhook: a Standard Webhooks secret is required")
	}
	w := &Webhook{url: u, hc: hc, now: now}
	for i, s := range secrets {
		key, err := signature.DecodeStandardSecret(s)
		if err != nil {
			// The error of DecodeStandardSecret never contains the secret.
			return nil, fmt.Errorf("alert: webhook secret %d: %w", i+1, err)
		}
		w.keys = append(w.keys, key)
	}
	if w.hc == nil {
		w.hc = &http.Client{Timeout: 10 * time.Second}
	}
	if w.now == nil {
		w.now = time.Now
	}
	return w, nil
}

// Name implements Sink.
func (w *Webhook) Name() string { return "webhook" }

// WebhookPayload is the body of the generic sink, shaped as the Standard
// Webhooks specification recommends: {type, timestamp, data}.
type WebhookPayload struct {
	Type      string      `json:"type"` // "jml.alert.<kind>"
	Timestamp time.Time   `json:"timestamp"`
	Data      WebhookData `json:"data"`
}

// WebhookData is the alert itself.
type WebhookData struct {
	Kind     Kind              `json:"kind"`
	Severity Severity          `json:"severity"`
	Summary  string            `json:"summary"`
	Person   string            `json:"person,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	At       time.Time         `json:"at"`
}

// Send implements Sink.
func (w *Webhook) Send(ctx context.Context, id string, a Alert) error {
	body, err := json.Marshal(WebhookPayload{Type: "jml.alert." + string(a.Kind), Timestamp: a.At, Data: WebhookData(a)})
	if err != nil {
		return fmt.Errorf("alert: webhook: encode: %w", err)
	}
	ts := w.now()
	sigs := make([]string, 0, len(w.keys))
	for _, k := range w.keys {
		sigs = append(sigs, signature.Sign(k, id, ts, body))
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", strings.Join(sigs, " "))
	return post(ctx, w.hc, w.Name(), w.url, h, body)
}
