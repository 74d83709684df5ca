package deel

import (
	"crypto/sha256"
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

// ContractPrefix marks a Person.ID that is a Deel contract id, used when a
// contract event names no worker: the Resolver turns it into the worker.
const ContractPrefix = "contract:"

// Source verifies x-deel-signature (lowercase hex HMAC-SHA256 of "POST" followed by
// the raw body, keyed with the subscription's signing key) and parses
// {data: {meta: {event_type}, resource}, timestamp}. The x-deel-hmac-label header
// (which key signed) is only logged: every active key is tried. Deel documents no
// event id in the envelope: the id is the body's sha256. The body timestamp is
// signed but Deel does not define a tolerance, and a retry may resend the same
// body, so it is not checked for freshness.
type Source struct {
	mac *signature.HMAC
	log *slog.Logger
}

var _ sources.Source = (*Source)(nil)

// NewSource returns the Deel source. cfg.Secrets are the subscriptions' signing keys.
func NewSource(cfg sources.Config) (*Source, error) {
	mac, err := signature.NewHMAC(sha256.New, signature.Hex, cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("deel source: %w", err)
	}
	return &Source{mac: mac, log: sources.LoggerOf(cfg)}, nil
}

// Name implements sources.Source.
func (d *Source) Name() string { return "deel" }

type deelWire struct {
	Data *struct {
		Meta *struct {
			EventType *string `json:"event_type"`
		} `json:"meta"`
		Resource map[string]json.RawMessage `json:"resource"`
	} `json:"data"`
	Timestamp string `json:"timestamp"`
}

// Parse implements sources.Source.
func (d *Source) Parse(r *http.Request, body []byte, now time.Time) (sources.Parsed, error) {
	if err := d.mac.Verify(r.Header.Get("x-deel-signature"), []byte(http.MethodPost), body); err != nil {
		return sources.Parsed{}, fmt.Errorf("%w: %w (x-deel-hmac-label %q)", sources.ErrUnauthorized, err, truncateHeader(r.Header.Get("x-deel-hmac-label")))
	}
	var w deelWire
	if err := sources.DecodeObject(body, &w); err != nil {
		return sources.Parsed{}, err
	}
	if w.Data == nil || w.Data.Meta == nil || w.Data.Meta.EventType == nil || strings.TrimSpace(*w.Data.Meta.EventType) == "" {
		return sources.Parsed{}, sources.Invalidf("data.meta.event_type is required")
	}
	res := w.Data.Resource
	typ, status, ok := deelType(*w.Data.Meta.EventType, res)
	if !ok {
		return sources.Parsed{Ignored: 1}, nil
	}
	p := deelPerson(res)
	occurred, _ := sources.ParseTime(w.Timestamp)
	ev, err := sources.NewEvent(d.Name(), sources.BodyID(body), typ, status, occurred, now, p)
	if err != nil {
		return sources.Parsed{}, err
	}
	return sources.Parsed{Events: []events.Event{ev}}, nil
}

// deelType maps the contract events webhooks.md names. Names for EOR hires and
// HRIS profiles are not pinned down there: everything else is ignored (counted).
func deelType(name string, res map[string]json.RawMessage) (events.Type, events.Status, bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "contract.created":
		return events.Joiner, "", true
	case "contract.terminated":
		return events.Leaver, events.Terminated, true
	case "contract.archived":
		return events.Update, "", true
	case "contract.status.updated":
		switch strings.ToLower(sources.FirstString(res, "status")) {
		case "terminated", "cancelled", "canceled", "ended":
			return events.Leaver, events.Terminated, true
		}
		return events.Update, "", true
	}
	return "", "", false
}

// deelPerson finds the worker: resource.worker.{id,email}, resource.worker_id,
// resource.employee.{id,email}; else the contract id, prefixed, for the resolver.
func deelPerson(res map[string]json.RawMessage) events.Person {
	var p events.Person
	for _, k := range []string{"worker", "employee", "profile"} {
		var sub map[string]json.RawMessage
		if raw, ok := res[k]; ok && json.Unmarshal(raw, &sub) == nil {
			if p.ID == "" {
				p.ID = sources.FirstString(sub, "id", "profile_id", "hris_profile_id")
			}
			if p.Email == "" {
				p.Email = sources.FirstString(sub, "email", "work_email")
			}
		}
	}
	if p.ID == "" {
		p.ID = sources.FirstString(res, "worker_id", "profile_id", "hris_profile_id")
	}
	if p.Email == "" {
		p.Email = sources.FirstString(res, "worker_email", "email")
	}
	if c := sources.FirstString(res, "contract_id", "id"); c != "" {
		p.Attributes = map[string]string{"contract_id": c}
		if p.ID == "" && sources.CleanEmail(p.Email) == "" {
			p.ID = ContractPrefix + c
		}
	}
	return p
}

func truncateHeader(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
