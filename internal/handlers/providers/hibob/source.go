package hibob

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// Source verifies Bob-Signature (base64 HMAC-SHA512 of the raw body, keyed with
// the secret shown in the webhook's configuration) and parses webhooks v2
// payloads: {companyId, type, triggeredBy, triggeredAt, version, data}. v2
// payloads carry no event id, so the id is the body's sha256. HiBob's connection
// test ("Ping test", unsigned) is answered 200 by Handshake.
type Source struct {
	mac *signature.HMAC
	log *slog.Logger
}

var (
	_ sources.Source     = (*Source)(nil)
	_ sources.Handshaker = (*Source)(nil)
)

// NewSource returns the HiBob source. cfg.Secrets are the webhook secrets.
func NewSource(cfg sources.Config) (*Source, error) {
	mac, err := signature.NewHMAC(sha512.New, signature.Base64, cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("hibob source: %w", err)
	}
	return &Source{mac: mac, log: sources.LoggerOf(cfg)}, nil
}

// Name implements sources.Source.
func (h *Source) Name() string { return "hibob" }

// Handshake answers Bob's connection test: when a webhook is created Bob POSTs
// the string "Ping test" (then, if that fails, {"text":"Ping test"}) and wants a
// 2xx. The ping may be unsigned; it produces no event, so answering it reveals
// nothing and changes nothing.
func (h *Source) Handshake(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if r.Method != http.MethodPost || !isHiBobPing(body) {
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	return true
}

func isHiBobPing(body []byte) bool {
	t := bytes.TrimSpace(body)
	if len(t) > 64 {
		return false
	}
	if strings.EqualFold(string(t), "ping test") || strings.EqualFold(string(t), `"ping test"`) {
		return true
	}
	var p struct {
		Text string `json:"text"`
	}
	return json.Unmarshal(t, &p) == nil && strings.EqualFold(strings.TrimSpace(p.Text), "ping test")
}

type hibobWire struct {
	CompanyID   sources.FlexID             `json:"companyId"`
	Type        *string                    `json:"type"`
	TriggeredBy sources.FlexID             `json:"triggeredBy"`
	TriggeredAt string                     `json:"triggeredAt"`
	Version     string                     `json:"version"`
	Data        map[string]json.RawMessage `json:"data"`
}

// Parse implements sources.Source.
func (h *Source) Parse(r *http.Request, body []byte, now time.Time) (sources.Parsed, error) {
	if err := h.mac.Verify(r.Header.Get("Bob-Signature"), body); err != nil {
		return sources.Parsed{}, fmt.Errorf("%w: %w", sources.ErrUnauthorized, err)
	}
	var w hibobWire
	if err := sources.DecodeObject(body, &w); err != nil {
		return sources.Parsed{}, err
	}
	if w.Type == nil || strings.TrimSpace(*w.Type) == "" {
		return sources.Parsed{}, sources.Invalidf("type is required")
	}
	typ, status, ok := hibobType(*w.Type, w.Data)
	if !ok {
		return sources.Parsed{Ignored: 1}, nil
	}
	p := events.Person{
		ID:    sources.FirstString(w.Data, "employeeId", "employee_id", "id"),
		Email: sources.FirstString(w.Data, "email", "workEmail", "work_email"),
	}
	attrs := map[string]string{}
	if fs := stringList(w.Data, "fieldIds", "fields", "changedFields"); len(fs) > 0 {
		attrs["changed_fields"] = sources.TruncateList(fs)
	}
	if t := sources.FirstString(w.Data, "tableId", "table"); t != "" {
		attrs["table"] = t
	}
	if len(attrs) > 0 {
		p.Attributes = attrs
	}
	occurred, _ := sources.ParseTime(w.TriggeredAt)
	ev, err := sources.NewEvent(h.Name(), sources.BodyID(body), typ, status, occurred, now, p)
	if err != nil {
		return sources.Parsed{}, err
	}
	return sources.Parsed{Events: []events.Event{ev}}, nil
}

// hibobType maps Bob's event names. Lifecycle events fire when the lifecycle
// entry becomes effective, so they carry a status; the rest are thin hints.
func hibobType(name string, data map[string]json.RawMessage) (events.Type, events.Status, bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "employee.joined":
		return events.Joiner, events.Active, true
	case "employee.left":
		return events.Leaver, events.Terminated, true
	case "employee.inactivated":
		// On leave, or terminated (then employee.left follows): access goes either way.
		return events.Suspend, events.Suspended, true
	case "employee.activated":
		return events.Rehire, events.Active, true
	case "employee.deleted":
		return events.Leaver, events.Terminated, true
	case "employee.created":
		// Created ahead of the start date: employee.joined makes it active.
		return events.Joiner, "", true
	case "employee.updated":
		for _, f := range stringList(data, "fieldIds", "fields", "changedFields") {
			f = strings.ToLower(f)
			if strings.Contains(f, "department") || strings.Contains(f, "title") || strings.Contains(f, "reportsto") ||
				strings.Contains(f, "manager") || strings.Contains(f, "site") || strings.Contains(f, "division") {
				return events.Mover, "", true
			}
		}
		return events.Update, "", true
	case "table.entry.created", "table.entry.updated":
		return events.Update, "", true
	}
	return "", "", false
}

// stringList returns the first of keys in m that holds a list of strings (or of
// objects with an "id").
func stringList(m map[string]json.RawMessage, keys ...string) []string {
	for _, k := range keys {
		raw, ok := m[k]
		if !ok {
			continue
		}
		var ss []string
		if json.Unmarshal(raw, &ss) == nil && len(ss) > 0 {
			return ss
		}
		var objs []struct {
			ID sources.FlexID `json:"id"`
		}
		if json.Unmarshal(raw, &objs) == nil {
			for _, o := range objs {
				if o.ID != "" {
					ss = append(ss, string(o.ID))
				}
			}
			if len(ss) > 0 {
				return ss
			}
		}
	}
	return nil
}
