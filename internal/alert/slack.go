package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Slack posts to a Slack-compatible incoming webhook (Slack, Mattermost,
// Rocket.Chat, Google Chat's Slack-compatible endpoints): {"text": …, "blocks": […]}.
// The webhook URL is the credential: it never appears in errors or logs.
type Slack struct {
	url *url.URL
	hc  *http.Client
}

var _ Sink = (*Slack)(nil)

// NewSlack returns a sink for webhookURL. hc nil means a client with a 10 s timeout.
func NewSlack(webhookURL string, hc *http.Client) (*Slack, error) {
	u, err := checkURL("slack", webhookURL)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Slack{url: u, hc: hc}, nil
}

// Name implements Sink.
func (s *Slack) Name() string { return "slack" }

// Send implements Sink.
func (s *Slack) Send(ctx context.Context, _ string, a Alert) error {
	body, err := json.Marshal(SlackPayload(a))
	if err != nil {
		return fmt.Errorf("alert: slack: encode: %w", err)
	}
	return post(ctx, s.hc, s.Name(), s.url, nil, body)
}

// SlackMessage is the incoming-webhook body.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is one Block Kit block (header, section or context).
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a Block Kit text object.
type SlackText struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

// Block Kit limits.
const (
	slackHeaderMax  = 150
	slackTextMax    = 3000
	slackFieldMax   = 2000
	slackFieldsMax  = 10
	slackContextMax = 10
)

var severityEmoji = map[Severity]string{SeverityCritical: ":rotating_light:", SeverityWarning: ":warning:", SeverityInfo: ":information_source:"}

// SlackPayload renders a (already sanitized) alert. "text" is the notification
// fallback; the blocks carry the same content laid out.
func SlackPayload(a Alert) SlackMessage {
	title := fmt.Sprintf("[%s] %s: %s", a.Severity, a.Kind, a.Summary)
	fields := []SlackText{
		{Type: "mrkdwn", Text: "*Kind*\n" + slackEscape(string(a.Kind))},
		{Type: "mrkdwn", Text: "*Severity*\n" + slackEscape(string(a.Severity))},
	}
	if a.Person != "" {
		fields = append(fields, SlackText{Type: "mrkdwn", Text: "*Person*\n" + slackEscape(a.Person)})
	}
	keys := make([]string, 0, len(a.Details))
	for k := range a.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var rest []string
	for _, k := range keys {
		line := "*" + slackEscape(k) + "*\n" + slackEscape(a.Details[k])
		if len(fields) < slackFieldsMax {
			fields = append(fields, SlackText{Type: "mrkdwn", Text: truncate(line, slackFieldMax)})
			continue
		}
		rest = append(rest, "• *"+slackEscape(k)+"*: "+slackEscape(a.Details[k]))
	}
	blocks := []SlackBlock{
		{Type: "header", Text: &SlackText{Type: "plain_text", Text: truncate(severityEmoji[a.Severity]+" "+string(a.Kind)+": "+a.Summary, slackHeaderMax)}},
		{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: truncate(slackEscape(a.Summary), slackTextMax)}, Fields: fields},
	}
	if len(rest) > 0 {
		blocks = append(blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: truncate(strings.Join(rest, "\n"), slackTextMax)}})
	}
	blocks = append(blocks, SlackBlock{Type: "context", Elements: []SlackText{
		{Type: "mrkdwn", Text: "sentry-jml · " + a.At.UTC().Format(time.RFC3339)},
	}})
	return SlackMessage{Text: truncate(title, slackTextMax), Blocks: blocks}
}

// slackEscape escapes the three characters Slack's mrkdwn treats as control.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate cuts s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
