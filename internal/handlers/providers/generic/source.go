package sources

import (
	"fmt"
	"net/http"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// Generic is the Standard Webhooks source: the body is the generic event schema,
// the event id is the webhook-id header.
type Generic struct {
	verifier *signature.StandardWebhooks
}

// NewGeneric returns the generic source for the given active secrets ("whsec_…").
// now may be nil.
func NewGeneric(secrets []string, now func() time.Time) (*Generic, error) {
	v, err := signature.NewStandardWebhooks(secrets, signature.DefaultTolerance, now)
	if err != nil {
		return nil, fmt.Errorf("generic source: %w", err)
	}
	return &Generic{verifier: v}, nil
}

// Name implements Source.
func (g *Generic) Name() string { return "generic" }

// Parse implements Source.
func (g *Generic) Parse(r *http.Request, body []byte, now time.Time) (Parsed, error) {
	id := r.Header.Get("webhook-id")
	if err := g.verifier.Verify(id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body); err != nil {
		return Parsed{}, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	if len(id) > 256 {
		return Parsed{}, fmt.Errorf("%w: webhook-id longer than 256 characters", events.ErrInvalid)
	}
	ev, err := events.ParseGeneric(body, now)
	if err != nil {
		return Parsed{}, err
	}
	ev.ID = id
	ev.Source = g.Name()
	ev.ReceivedAt = now.UTC()
	return Parsed{Events: []events.Event{ev}}, nil
}
