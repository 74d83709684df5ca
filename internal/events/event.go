package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// Type is what happened to a person, as the source saw it.
type Type string

// The event types of the generic schema.
const (
	Joiner  Type = "joiner"
	Mover   Type = "mover"
	Leaver  Type = "leaver"
	Rehire  Type = "rehire"
	Suspend Type = "suspend"
	Update  Type = "update"
)

// Status is a person's employment status; it is authoritative over Type.
type Status string

// The statuses a person can have.
const (
	Active     Status = "active"
	Suspended  Status = "suspended"
	Terminated Status = "terminated"
)

// Types lists every valid Type.
var validTypes = map[Type]Status{Joiner: Active, Rehire: Active, Leaver: Terminated, Suspend: Suspended, Mover: "", Update: ""}

// Valid reports whether t is one of the schema's types.
func (t Type) Valid() bool { _, ok := validTypes[t]; return ok }

// Valid reports whether s is one of the schema's statuses.
func (s Status) Valid() bool { return s == Active || s == Suspended || s == Terminated }

// Person is what a source knows about someone. The same shape is a roster row.
type Person struct {
	ID           string            `json:"id,omitempty"`
	Email        string            `json:"email,omitempty"`
	Name         string            `json:"name,omitempty"`
	Status       Status            `json:"status,omitempty"`
	Department   string            `json:"department,omitempty"`
	Title        string            `json:"title,omitempty"`
	Groups       []string          `json:"groups"` // null = unchanged; [] = in no group
	ManagerEmail string            `json:"manager_email,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
}

// Key is the person's directory key: the HR id when known, else the lower-cased email.
func (p Person) Key() string {
	if p.ID != "" {
		return "id:" + p.ID
	}
	return "email:" + strings.ToLower(p.Email)
}

// Event is the normalized lifecycle event that travels through JetStream.
type Event struct {
	// ID is the source's event id (the generic source: the webhook-id header).
	ID string `json:"id"`
	// Source names the webhook source ("generic", "okta", …).
	Source      string     `json:"source"`
	Type        Type       `json:"type"`
	OccurredAt  time.Time  `json:"occurred_at"`
	EffectiveAt *time.Time `json:"effective_at,omitempty"`
	ReceivedAt  time.Time  `json:"received_at"`
	Person      Person     `json:"person"`
}

// MsgID is the JetStream Nats-Msg-Id of the event: "<source>:<event id>".
func (e Event) MsgID() string { return e.Source + ":" + e.ID }

// Subject is the subject the event is published on: jml.events.<source>.<type>.
func (e Event) Subject() string { return Subject(e.Source, e.Type) }

// ErrInvalid wraps every schema violation; its message is safe to return to the sender.
var ErrInvalid = errors.New("invalid event")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// genericWire is the generic schema as it arrives on the wire.
type genericWire struct {
	Type        *Type      `json:"type"`
	OccurredAt  *time.Time `json:"occurred_at"`
	EffectiveAt *time.Time `json:"effective_at"`
	Person      *Person    `json:"person"`
}

// ParseGeneric decodes and validates a body of the generic schema. Unknown type, a
// type that contradicts status, a person with neither id nor email, a malformed
// email, or a body that is not one JSON object all fail with ErrInvalid and a reason.
// When status is absent it is implied by the type (mover and update leave it unset,
// meaning "unchanged"); when occurred_at is absent, fallback is used.
func ParseGeneric(body []byte, fallback time.Time) (Event, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, invalid("body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var w genericWire
	if err := dec.Decode(&w); err != nil {
		return Event{}, invalid("malformed JSON: %s", jsonReason(err))
	}
	if dec.More() {
		return Event{}, invalid("body must be exactly one JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return Event{}, invalid("trailing data after the JSON object")
	}
	if w.Type == nil || *w.Type == "" {
		return Event{}, invalid("type is required (one of joiner, mover, leaver, rehire, suspend, update)")
	}
	if !w.Type.Valid() {
		return Event{}, invalid("unknown type %q (want one of joiner, mover, leaver, rehire, suspend, update)", truncate(string(*w.Type)))
	}
	if w.Person == nil {
		return Event{}, invalid("person is required")
	}
	p := *w.Person
	p.ID = strings.TrimSpace(p.ID)
	p.Email = strings.TrimSpace(p.Email)
	if p.ID == "" && p.Email == "" {
		return Event{}, invalid("person needs an id or an email")
	}
	if p.Email != "" {
		a, err := mail.ParseAddress(p.Email)
		if err != nil || a.Address != p.Email || a.Name != "" {
			return Event{}, invalid("person.email %q is not an email address", truncate(p.Email))
		}
	}
	if p.ManagerEmail != "" {
		if _, err := mail.ParseAddress(p.ManagerEmail); err != nil {
			return Event{}, invalid("person.manager_email %q is not an email address", truncate(p.ManagerEmail))
		}
	}
	implied := validTypes[*w.Type]
	switch {
	case p.Status == "":
		p.Status = implied
	case !p.Status.Valid():
		return Event{}, invalid("unknown person.status %q (want active, suspended or terminated)", truncate(string(p.Status)))
	case implied != "" && p.Status != implied:
		return Event{}, invalid("type %s contradicts person.status %s (a %s is %s)", *w.Type, p.Status, *w.Type, implied)
	}
	ev := Event{Type: *w.Type, Person: p, EffectiveAt: w.EffectiveAt}
	if w.OccurredAt != nil {
		ev.OccurredAt = w.OccurredAt.UTC()
	} else {
		ev.OccurredAt = fallback.UTC()
	}
	if ev.EffectiveAt != nil {
		t := ev.EffectiveAt.UTC()
		ev.EffectiveAt = &t
	}
	return ev, nil
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %s must be %s, not %s", te.Field, te.Type, te.Value)
		}
		return fmt.Sprintf("expected %s, not %s", te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return "timestamps must be RFC 3339, e.g. 2026-11-28T10:00:00Z"
	}
	return truncate(err.Error())
}

func truncate(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// Marshal encodes the event for the wire.
func Marshal(e Event) ([]byte, error) { return json.Marshal(e) }

// Unmarshal decodes an event from a JetStream message body.
func Unmarshal(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if _, ref := e.SourceRef(); e.Source == "" || e.ID == "" || !e.Type.Valid() || (ref == "" && e.Person.Email == "") {
		return Event{}, fmt.Errorf("decode event: %w: missing source, id, type or person", ErrInvalid)
	}
	return e, nil
}

// SourceRef is the person's identity at the event's source, for the link
// table: the HR id for HR systems and the generic source, the Okta user id
// (attribute okta_id), the SCIM resource id (attribute scim_id). Events from
// identity providers may carry only that.
func (e Event) SourceRef() (source, id string) {
	switch {
	case e.Person.Attributes["okta_id"] != "":
		return e.Source, e.Person.Attributes["okta_id"]
	case e.Person.Attributes["scim_id"] != "":
		return e.Source, e.Person.Attributes["scim_id"]
	}
	return e.Source, e.Person.ID
}
