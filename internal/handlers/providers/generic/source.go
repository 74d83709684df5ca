package generic

import (
	"fmt"
	"net/http"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// Source is the Standard Webhooks source: the body is the generic event schema,
// the event id is the webhook-id header.
type Source struct {
	verifier *signature.StandardWebhooks
}

// NewSource returns the generic source for the given active secrets ("whsec_…").
// now may be nil.
func NewSource(secrets []string, now func() time.Time) (*Source, error) {
	v, err := signature.NewStandardWebhooks(secrets, signature.DefaultTolerance, now)
	if err != nil {
		return nil, fmt.Errorf("generic source: %w", err)
	}
	return &Source{verifier: v}, nil
}

// Name implements sources.Source.
func (g *Source) Name() string { return "generic" }

// Parse implements sources.Source.
func (g *Source) Parse(r *http.Request, body []byte, now time.Time) (sources.Parsed, error) {
	id := r.Header.Get("webhook-id")
	if err := g.verifier.Verify(id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body); err != nil {
		return sources.Parsed{}, fmt.Errorf("%w: %w", sources.ErrUnauthorized, err)
	}
	if len(id) > 256 {
		return sources.Parsed{}, fmt.Errorf("%w: webhook-id longer than 256 characters", events.ErrInvalid)
	}
	ev, err := events.ParseGeneric(body, now)
	if err != nil {
		return sources.Parsed{}, err
	}
	ev.ID = id
	ev.Source = g.Name()
	ev.ReceivedAt = now.UTC()
	return sources.Parsed{Events: []events.Event{ev}}, nil
}
