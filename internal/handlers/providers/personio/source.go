package personio

import (
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

// Source checks the webhook's TOKEN auth (the configured token arrives, as is,
// in the Authorization header; Personio has no HMAC) and parses its "dataless"
// envelope {company_id, event_name, occurred_at, payload, meta}. Because the
// body is not signed, treat it as a hint: the worker should re-read the person
// through the API (the Resolver) before a destructive step. The envelope has
// no documented event id: the id is the body's sha256 (retries resend the same
// body).
//
// Terminations are confirmed through Personio's API
// (JML_SOURCE_PERSONIO_API_TOKEN) before they are applied; without API access
// they are applied unconfirmed, and the constructor logs a warning saying so.
//
// Personio's CUSTOM auth type (up to three custom headers) is not supported:
// configure auth_type TOKEN.
type Source struct {
	auth *signature.StaticToken
	log  *slog.Logger
}

var (
	_ sources.Source        = (*Source)(nil)
	_ sources.Authenticator = (*Source)(nil)
)

// NewSource returns the Personio source. cfg.Secrets are the tokens configured
// on the webhook (the whole Authorization value; "Bearer x" or just "x").
func NewSource(cfg sources.Config) (*Source, error) {
	st, err := signature.NewStaticToken(cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("personio source: %w", err)
	}
	p := &Source{auth: st, log: sources.LoggerOf(cfg)}
	sources.WarnUnconfirmed(p.log, "personio", cfg)
	return p, nil
}

// Name implements sources.Source.
func (p *Source) Name() string { return "personio" }

type personioWire struct {
	CompanyID  sources.FlexID             `json:"company_id"`
	EventName  *string                    `json:"event_name"`
	OccurredAt string                     `json:"occurred_at"`
	Payload    map[string]json.RawMessage `json:"payload"`
	Meta       json.RawMessage            `json:"meta"`
}

// Authenticate implements sources.Authenticator: the static token, before the body is read.
func (p *Source) Authenticate(r *http.Request) error {
	if err := p.auth.Verify(r.Header.Get("Authorization")); err != nil {
		return fmt.Errorf("%w: %w", sources.ErrUnauthorized, err)
	}
	return nil
}

// Parse implements sources.Source.
func (p *Source) Parse(r *http.Request, body []byte, now time.Time) (sources.Parsed, error) {
	if err := p.Authenticate(r); err != nil {
		return sources.Parsed{}, err
	}
	var w personioWire
	if err := sources.DecodeObject(body, &w); err != nil {
		return sources.Parsed{}, err
	}
	if w.EventName == nil || strings.TrimSpace(*w.EventName) == "" {
		return sources.Parsed{}, sources.Invalidf("event_name is required")
	}
	name := strings.ToLower(strings.TrimSpace(*w.EventName))
	typ, status, ok := personioType(name)
	if !ok {
		return sources.Parsed{Ignored: 1}, nil
	}
	if w.Payload == nil {
		return sources.Parsed{}, sources.Invalidf("payload is required")
	}
	person := events.Person{Email: sources.FirstString(w.Payload, "email")}
	if strings.HasPrefix(name, "person.") {
		person.ID = sources.FirstString(w.Payload, "id", "person_id")
	} else {
		// employment.*: the person is payload.person.id (or person_id); payload.id
		// is the employment's id.
		person.ID = sources.FirstString(w.Payload, "person_id")
		if person.ID == "" {
			var ref map[string]json.RawMessage
			if raw, ok := w.Payload["person"]; ok && json.Unmarshal(raw, &ref) == nil {
				person.ID = sources.FirstString(ref, "id")
			}
		}
		if emp := sources.FirstString(w.Payload, "id"); emp != "" {
			person.Attributes = map[string]string{"employment_id": emp}
		}
	}
	occurred, _ := sources.ParseTime(w.OccurredAt)
	ev, err := sources.NewEvent(p.Name(), sources.BodyID(body), typ, status, occurred, now, person)
	if err != nil {
		return sources.Parsed{}, err
	}
	return sources.Parsed{Events: []events.Event{ev}}, nil
}

// personioType maps Personio's event names (compared case-insensitively: one
// page spells Person.created). employment.started and employment.terminated
// fire on the start and termination dates.
func personioType(name string) (events.Type, events.Status, bool) {
	switch name {
	case "person.created", "employment.created":
		return events.Joiner, "", true
	case "person.updated", "employment.updated", "employment.deleted":
		return events.Update, "", true
	case "person.deleted":
		return events.Leaver, events.Terminated, true
	case "employment.started":
		return events.Joiner, events.Active, true
	case "employment.terminated":
		return events.Leaver, events.Terminated, true
	}
	return "", "", false
}
