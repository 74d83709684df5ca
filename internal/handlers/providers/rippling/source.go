package rippling

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// Source checks the static Authorization token a partner app may configure
// (Rippling documents no HMAC: the token is the only proof, so a source without
// one stays disabled) and parses the form-encoded partner webhook
// event_name, company_id, company_primary_email, id (a JSON object with the same
// keys is accepted too). The id field is the resource id: the employee for
// employee.* events. company_primary_email is the company's address, never the
// person's.
//
// Rippling documents neither an event id nor a delivery id, and the body has
// no time: the same body means "this happened again" as well as "this is a
// retry". The event id is the body's sha256 and the DedupeWindow the
// request arrives in: retries within the window collapse, and a termination
// repeated after a rehire (a later window) is processed. Convergence is
// idempotent, so a retry split across two windows costs nothing.
//
// The body is not signed: a termination is confirmed through Rippling's API
// (JML_SOURCE_RIPPLING_API_TOKEN) before it is applied; without API access it
// is applied unconfirmed, and the constructor logs a warning saying so.
type Source struct {
	auth *signature.StaticToken
	log  *slog.Logger
}

// DedupeWindow is the span within which a repeated Rippling body is a
// retry of the same delivery.
const DedupeWindow = 10 * time.Minute

var (
	_ sources.Source        = (*Source)(nil)
	_ sources.Authenticator = (*Source)(nil)
)

// NewSource returns the Rippling source. cfg.Secrets are the bearer tokens
// configured for the webhook ("Bearer x" or just "x").
func NewSource(cfg sources.Config) (*Source, error) {
	st, err := signature.NewStaticToken(cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("rippling source: %w", err)
	}
	rp := &Source{auth: st, log: sources.LoggerOf(cfg)}
	sources.WarnUnconfirmed(rp.log, "rippling", cfg)
	return rp, nil
}

// Name implements sources.Source.
func (rp *Source) Name() string { return "rippling" }

type ripplingWire struct {
	EventName *string        `json:"event_name"`
	CompanyID sources.FlexID `json:"company_id"`
	ID        sources.FlexID `json:"id"`
}

// Authenticate implements sources.Authenticator: the static token, before the body is read.
func (rp *Source) Authenticate(r *http.Request) error {
	if err := rp.auth.Verify(r.Header.Get("Authorization")); err != nil {
		return fmt.Errorf("%w: %w", sources.ErrUnauthorized, err)
	}
	return nil
}

// Parse implements sources.Source.
func (rp *Source) Parse(r *http.Request, body []byte, now time.Time) (sources.Parsed, error) {
	if err := rp.Authenticate(r); err != nil {
		return sources.Parsed{}, err
	}
	var w ripplingWire
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		if err := sources.DecodeObject(trimmed, &w); err != nil {
			return sources.Parsed{}, err
		}
	} else {
		vals, err := url.ParseQuery(string(trimmed))
		if err != nil {
			return sources.Parsed{}, sources.Invalidf("body is neither form-encoded nor JSON")
		}
		if vals.Has("event_name") {
			name := vals.Get("event_name")
			w.EventName = &name
		}
		w.CompanyID = sources.FlexID(strings.TrimSpace(vals.Get("company_id")))
		w.ID = sources.FlexID(strings.TrimSpace(vals.Get("id")))
	}
	if w.EventName == nil || strings.TrimSpace(*w.EventName) == "" {
		return sources.Parsed{}, sources.Invalidf("event_name is required")
	}
	typ, status, ok := ripplingType(*w.EventName)
	if !ok {
		return sources.Parsed{Ignored: 1}, nil
	}
	p := events.Person{ID: string(w.ID)}
	if w.CompanyID != "" {
		p.Attributes = map[string]string{"company_id": string(w.CompanyID)}
	}
	id := sources.BodyID(body) + "@" + strconv.FormatInt(now.Truncate(DedupeWindow).Unix(), 10)
	ev, err := sources.NewEvent(rp.Name(), id, typ, status, time.Time{}, now, p)
	if err != nil {
		return sources.Parsed{}, err
	}
	return sources.Parsed{Events: []events.Event{ev}}, nil
}

// ripplingType maps the partner-app employee events. employee.created means the
// employee was provisioned to the app (access granted) and employee.deleted that
// the app's access was removed (termination or a rule): a suspension, since the
// person may still be employed; employee.terminated is the termination.
func ripplingType(name string) (events.Type, events.Status, bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "employee.created":
		return events.Joiner, events.Active, true
	case "employee.hired":
		return events.Joiner, "", true
	case "employee.updated":
		return events.Update, "", true
	case "employee.deleted":
		return events.Suspend, events.Suspended, true
	case "employee.terminated":
		return events.Leaver, events.Terminated, true
	}
	return "", "", false
}
