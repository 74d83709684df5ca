package events

import (
	"crypto/sha256"
	"encoding/hex"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits every entry point (webhook sources, SCIM, the roster) enforces on what
// it takes from the outside. Ids and emails end up in NATS subjects, headers
// (Nats-Msg-Id) and KV keys, where one protocol line is at most 4096 bytes: an
// unbounded id once closed the shared NATS connection.
const (
	// MaxIDLen bounds ids: event ids, person ids, provider user ids.
	MaxIDLen = 256
	// MaxEmailLen bounds email addresses (RFC 5321's path limit).
	MaxEmailLen = 254
	// MaxTextLen bounds free text: names, departments, titles, group names,
	// attribute values.
	MaxTextLen = 1024
	// MaxGroups bounds the groups of one person.
	MaxGroups = 1000
	// MaxAttributes bounds the attributes of one person.
	MaxAttributes = 64
	// DefaultMaxClockSkew is how far ahead of the receiver's clock an event
	// time may be (JML_MAX_CLOCK_SKEW).
	DefaultMaxClockSkew = 5 * time.Minute
	// MaxEffectiveAhead is how far in the future effective_at may be.
	MaxEffectiveAhead = 366 * 24 * time.Hour
)

// CheckID validates an id: at most MaxIDLen bytes of valid UTF-8 without
// control characters. Empty is valid (the caller decides whether it is
// required). The error wraps ErrInvalid; field names the id in the reason.
func CheckID(field, id string) error {
	if len(id) > MaxIDLen {
		return invalid("%s is longer than %d characters", field, MaxIDLen)
	}
	return checkText(field, id)
}

// CheckEmail validates an email address: at most MaxEmailLen bytes, and a bare
// addr-spec (no display name, no angle brackets, nothing around it). Empty is
// valid.
func CheckEmail(field, email string) error {
	if email == "" {
		return nil
	}
	if len(email) > MaxEmailLen {
		return invalid("%s is longer than %d characters", field, MaxEmailLen)
	}
	if err := checkText(field, email); err != nil {
		return err
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return invalid("%s %q is not an email address (want a bare address, no display name)", field, truncate(email))
	}
	return nil
}

// CheckText validates free text: at most MaxTextLen bytes of valid UTF-8
// without control characters.
func CheckText(field, s string) error {
	if len(s) > MaxTextLen {
		return invalid("%s is longer than %d characters", field, MaxTextLen)
	}
	return checkText(field, s)
}

func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return invalid("%s is not valid UTF-8", field)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return invalid("%s contains control characters", field)
	}
	return nil
}

// CheckPerson validates every field of p that came from the outside.
func CheckPerson(p Person) error {
	if err := CheckID("person.id", p.ID); err != nil {
		return err
	}
	if err := CheckEmail("person.email", p.Email); err != nil {
		return err
	}
	if err := CheckEmail("person.manager_email", p.ManagerEmail); err != nil {
		return err
	}
	// In a fixed order, so the same input always names the same field.
	for _, fv := range [...][2]string{{"person.name", p.Name}, {"person.department", p.Department}, {"person.title", p.Title}} {
		if err := CheckText(fv[0], fv[1]); err != nil {
			return err
		}
	}
	if len(p.Groups) > MaxGroups {
		return invalid("person.groups has more than %d groups", MaxGroups)
	}
	for _, g := range p.Groups {
		if err := CheckID("person.groups[]", g); err != nil {
			return err
		}
	}
	if len(p.Attributes) > MaxAttributes {
		return invalid("person.attributes has more than %d entries", MaxAttributes)
	}
	for k, v := range p.Attributes {
		if err := CheckID("person.attributes key", k); err != nil {
			return err
		}
		if err := CheckText("person.attributes["+truncate(k)+"]", v); err != nil {
			return err
		}
	}
	// Provider user ids are link keys (SourceRef).
	if _, ref := (Event{Person: p}).SourceRef(); ref != p.ID {
		if err := CheckID("provider user id", ref); err != nil {
			return err
		}
	}
	return nil
}

// CheckTimes refuses an occurred_at more than skew ahead of now (a far-future
// version would pin the person: every later, genuine event would lose) and an
// effective_at more than MaxEffectiveAhead ahead. skew <= 0 means
// DefaultMaxClockSkew.
func CheckTimes(e Event, now time.Time, skew time.Duration) error {
	if skew <= 0 {
		skew = DefaultMaxClockSkew
	}
	if e.OccurredAt.After(now.Add(skew)) {
		return invalid("occurred_at %s is more than %s ahead of the receiver's clock", e.OccurredAt.UTC().Format(time.RFC3339), skew)
	}
	if e.EffectiveAt != nil && e.EffectiveAt.After(now.Add(MaxEffectiveAhead)) {
		return invalid("effective_at %s is more than a year ahead", e.EffectiveAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// Check validates an event before it is published: the event id, every person
// field and the times (see CheckTimes). The error wraps ErrInvalid and its
// message is safe to return to the sender.
func (e Event) Check(now time.Time, skew time.Duration) error {
	if e.ID == "" {
		return invalid("event id is required")
	}
	if err := CheckID("event id", e.ID); err != nil {
		return err
	}
	if err := CheckPerson(e.Person); err != nil {
		return err
	}
	return CheckTimes(e, now, skew)
}

// SafeID returns id when it is at most MaxIDLen bytes of printable UTF-8, else
// "sha256:" and the hex SHA-256 of id: a provider's event id is an opaque
// dedupe key, so a long or odd one is replaced rather than refused.
func SafeID(id string) string {
	if len(id) <= MaxIDLen && checkText("", id) == nil {
		return id
	}
	return HashID(id)
}

// HashID is "sha256:" and the hex SHA-256 of s.
func HashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ShortHash is a short, stable pseudonym of s (the first 12 hex digits of its
// SHA-256) for logs and span attributes that must not carry an email.
func ShortHash(s string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(s)))
	return hex.EncodeToString(sum[:6])
}

// LogKey is a person's key for logs and traces: the id key as is, an email key
// pseudonymised ("email#<ShortHash>").
func (p Person) LogKey() string { return KeyForLog(p.Key()) }

// KeyForLog pseudonymises a directory key ("email:…" → "email#<ShortHash>")
// for logs and span attributes; other keys are returned as they are.
func KeyForLog(key string) string {
	if email, ok := strings.CutPrefix(key, "email:"); ok {
		return "email#" + ShortHash(email)
	}
	return key
}

// Bounds the worker applies to what it reads back from JML_EVENTS. The
// receiver refuses oversized input, but a message published by an older
// version or straight to the stream must not reach a NATS subject, header or
// KV key unbounded: one protocol line over the server's limit closes the
// shared connection for good.
const (
	// MaxSourceLen bounds a source name (a NATS subject token, and part of
	// link keys).
	MaxSourceLen = 64
	// MaxEventBytes bounds an encoded event. Every field is bounded (see
	// CheckPerson), so a valid event is far smaller; a larger message is
	// dead-lettered without being decoded.
	MaxEventBytes = 1 << 20
	// MaxHeaderValueLen bounds a header value the worker writes (Jml-Error is
	// cut to it, keeping the start).
	MaxHeaderValueLen = 4 << 10
)

// CheckSource validates a source name: 1 to MaxSourceLen of a-z, 0-9, '_'
// and '-' (it is a NATS subject token).
func CheckSource(s string) error {
	if s == "" || len(s) > MaxSourceLen {
		return invalid("source must be 1 to %d characters", MaxSourceLen)
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return invalid("source %q: want a-z, 0-9, '_' or '-'", truncate(s))
		}
	}
	return nil
}

// CheckStored validates what the worker derives subjects, headers and keys
// from in an event read back from the stream: the source, the person id, the
// email and the provider user id. It is looser than Check (no address syntax,
// no times, no free text) so that events stored by older versions still
// converge; what it refuses can never be processed and is dead-lettered.
func CheckStored(e Event) error {
	if err := CheckSource(e.Source); err != nil {
		return err
	}
	if err := CheckID("person.id", e.Person.ID); err != nil {
		return err
	}
	if len(e.Person.Email) > MaxEmailLen {
		return invalid("person.email is longer than %d characters", MaxEmailLen)
	}
	if err := checkText("person.email", e.Person.Email); err != nil {
		return err
	}
	if _, ref := e.SourceRef(); ref != e.Person.ID {
		if err := CheckID("provider user id", ref); err != nil {
			return err
		}
	}
	return nil
}

// HeaderValue makes s safe as a NATS header value: control characters
// (a newline would end the header) become spaces, invalid UTF-8 is replaced,
// and it is cut to max bytes, keeping the start, with "…" when cut.
func HeaderValue(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
