package sources

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Helpers the provider packages' webhook sources share
// (internal/handlers/providers/<name>).

// LoggerOf returns cfg.Logger, or a logger that discards.
func LoggerOf(cfg Config) *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Invalidf returns an error wrapping events.ErrInvalid (the receiver's 400).
func Invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", events.ErrInvalid, fmt.Sprintf(format, args...))
}

// BodyID is the event id of a provider that gives none: the raw body's sha256.
func BodyID(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// DecodeObject decodes exactly one JSON object into v, with a reason on failure.
func DecodeObject(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Invalidf("body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return Invalidf("malformed JSON: syntax error at byte %d", se.Offset)
		case errors.As(err, &te):
			return Invalidf("malformed JSON: field %s has the wrong type", te.Field)
		}
		return Invalidf("malformed JSON")
	}
	if dec.More() {
		return Invalidf("body must be exactly one JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return Invalidf("trailing data after the JSON object")
	}
	return nil
}

// FlexID is an id that providers send as a string or as a number; numbers are
// kept verbatim (HiBob's 19-digit ids do not fit a float64).
type FlexID string

// UnmarshalJSON implements json.Unmarshaler.
func (f *FlexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = FlexID(strings.TrimSpace(s))
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = FlexID(n.String())
	default:
		return errors.New("id must be a string or a number")
	}
	return nil
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

// ParseTime reads the timestamps providers send: RFC 3339, ISO 8601 with a
// +0000 offset or none (taken as UTC), or Unix seconds or milliseconds.
func ParseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		switch {
		case n < 0:
			return time.Time{}, false
		case n >= 1e12 && n < 1e14: // milliseconds
			return time.UnixMilli(n).UTC(), true
		case n < 1e11:
			return time.Unix(n, 0).UTC(), true
		}
		return time.Time{}, false
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if t.Year() < 1970 || t.Year() > 9999 {
				return time.Time{}, false
			}
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// CleanEmail returns s when it is one bare address, else "".
func CleanEmail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 254 {
		return ""
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return ""
	}
	return s
}

// TruncateList joins ss with commas, cut at 512 bytes (an attribute value).
func TruncateList(ss []string) string {
	out := strings.Join(ss, ",")
	if len(out) > 512 {
		out = out[:512]
	}
	return out
}

// NewEvent builds and checks one provider event. The person must have an id or a
// valid email; a malformed email is dropped when there is an id, but an email
// over events.MaxEmailLen or with control characters is refused, like an id
// over events.MaxIDLen. A long or odd event id is replaced by its hash.
func NewEvent(source, id string, typ events.Type, status events.Status, occurred, now time.Time, p events.Person) (events.Event, error) {
	p.ID = strings.TrimSpace(p.ID)
	p.Status = status
	if raw := strings.TrimSpace(p.Email); len(raw) > events.MaxEmailLen {
		return events.Event{}, Invalidf("employee email longer than %d characters", events.MaxEmailLen)
	} else if err := events.CheckText("employee email", raw); err != nil {
		return events.Event{}, err
	}
	p.Email = CleanEmail(p.Email)
	if p.ID == "" && p.Email == "" {
		return events.Event{}, Invalidf("%s event without an employee id or email", typ)
	}
	if err := events.CheckID("employee id", p.ID); err != nil {
		return events.Event{}, err
	}
	if err := events.CheckPerson(p); err != nil {
		return events.Event{}, err
	}
	if occurred.IsZero() {
		occurred = now
	}
	return events.Event{
		ID:         events.SafeID(id),
		Source:     source,
		Type:       typ,
		OccurredAt: occurred.UTC(),
		ReceivedAt: now.UTC(),
		Person:     p,
	}, nil
}

// FirstString returns the first of keys in m that holds a string or a number.
func FirstString(m map[string]json.RawMessage, keys ...string) string {
	for _, k := range keys {
		raw, ok := m[k]
		if !ok {
			continue
		}
		var id FlexID
		if json.Unmarshal(raw, &id) == nil && id != "" {
			return string(id)
		}
	}
	return ""
}

// WarnUnconfirmed says, once at start, that an unsigned source's terminations
// will be applied without the provider's confirmation.
func WarnUnconfirmed(log *slog.Logger, name string, cfg Config) {
	if cfg.APIURL != "" || cfg.APIToken != "" {
		return
	}
	up := strings.ToUpper(name)
	log.Warn(name+" terminations will be applied UNCONFIRMED: the webhook is not signed and no provider API is configured to re-read the person; set JML_SOURCE_"+up+"_API_TOKEN (on the worker) to confirm them",
		"source", name)
}
