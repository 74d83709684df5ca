package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
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

// Key is the person's key in the shared HR id space ("id:<id>"), else the
// lower-cased email ("email:<email>"): what logs name a person by. It is not
// necessarily the directory key: HR ids are namespaced by source, and
// state.ResolvePerson finds the directory person (state.IDSpaces).
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
	// OutOfBand is set on the convergence requests the audit-log follower
	// publishes (Source SourceSentryAudit): the Sentry audit entry that showed
	// someone changed this person's access by hand. Such an event carries no
	// HR data: the worker converges the person's stored desired state and
	// never applies it to the directory.
	OutOfBand *OutOfBand `json:"out_of_band,omitempty"`
}

// SourceSentryAudit is the source of the audit-log follower's convergence
// requests (subject jml.events.sentry-audit.update). No webhook route
// accepts it: only the follower publishes it.
const SourceSentryAudit = "sentry-audit"

// OutOfBand names a change made in Sentry outside the daemon, from the
// organization's audit log.
type OutOfBand struct {
	// AuditID is the audit entry's id; Event its name (member.join-team, …).
	AuditID string `json:"audit_id"`
	Event   string `json:"event"`
	// Actor is who made the change: the user's email, or the name Sentry
	// gives a non-user actor (an integration); ActorID the user id ("" for
	// non-users).
	Actor   string `json:"actor"`
	ActorID string `json:"actor_id,omitempty"`
	// At is when Sentry recorded the change.
	At time.Time `json:"at"`
	// MemberID is the entry's target member, when it names one.
	MemberID string `json:"member_id,omitempty"`
}

// MsgID is the JetStream Nats-Msg-Id of the event: "<source>:<event id>".
// An id that is too long for a NATS header is replaced by its hash (SafeID).
func (e Event) MsgID() string { return e.Source + ":" + SafeID(e.ID) }

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

// genericOptions make the generic schema strict: a member name the schema does
// not have (a misspelled effective_at would make a future termination
// immediate), a name in another case, a repeated name ("type":"joiner",
// "type":"leaver") and invalid UTF-8 are errors, not silently resolved.
func genericOptions() jsonv2.Options {
	return jsonv2.JoinOptions(
		jsonv2.RejectUnknownMembers(true),
		jsonv2.MatchCaseInsensitiveNames(false),
		jsontext.AllowDuplicateNames(false),
		jsontext.AllowInvalidUTF8(false),
	)
}

// ParseGeneric decodes and validates a body of the generic schema. Unknown type, a
// type that contradicts status, a person with neither id nor email, a malformed
// email, an unknown, case-variant or repeated member, invalid UTF-8, or a body
// that is not one JSON object all fail with ErrInvalid and a reason. Ids, emails
// and text are bounded (CheckPerson). When status is absent it is implied by the
// type (mover and update leave it unset, meaning "unchanged"); when occurred_at
// is absent, fallback is used.
func ParseGeneric(body []byte, fallback time.Time) (Event, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, invalid("body must be a JSON object")
	}
	var w genericWire
	if err := jsonv2.Unmarshal(trimmed, &w, genericOptions()); err != nil {
		return Event{}, invalid("malformed JSON: %s", jsonReason(err))
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
	if err := CheckPerson(p); err != nil {
		return Event{}, err
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

// jsonReason is a short, sender-safe reason for a decoding error of the v2
// decoder: the JSON pointer of the offending member and what is wrong with it.
func jsonReason(err error) string {
	var se *jsonv2.SemanticError
	var sy *jsontext.SyntacticError
	switch {
	case errors.As(err, &sy):
		msg := "syntax error"
		if sy.Err != nil {
			msg = truncate(sy.Err.Error())
		}
		switch {
		case strings.Contains(msg, "after top-level value"):
			return "body must be exactly one JSON object"
		case errors.Is(sy.Err, jsontext.ErrDuplicateName):
			msg = "duplicate member name"
		case sy.Err != nil && strings.Contains(sy.Err.Error(), "UTF-8"):
			msg = "invalid UTF-8"
		case errors.Is(sy.Err, io.ErrUnexpectedEOF):
			msg = "unexpected end of input"
		}
		if sy.JSONPointer != "" {
			return fmt.Sprintf("%s at %s", msg, truncate(string(sy.JSONPointer)))
		}
		return fmt.Sprintf("%s at byte %d", msg, sy.ByteOffset)
	case errors.As(err, &se):
		at := truncate(string(se.JSONPointer))
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			return fmt.Sprintf("unknown member %s (names are case-sensitive)", at)
		case se.GoType == reflect.TypeFor[time.Time]():
			return fmt.Sprintf("%s: timestamps must be RFC 3339, e.g. 2026-11-28T10:00:00Z", at)
		case se.GoType != nil && se.JSONKind != 0:
			return fmt.Sprintf("%s must be %s, not %s", at, kindOf(se.GoType), se.JSONKind)
		}
		return fmt.Sprintf("invalid value at %s", at)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return truncate(err.Error())
}

func kindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

func truncate(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) && len(s) > 0 {
			s = s[:len(s)-1]
		}
		return s + "…"
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
