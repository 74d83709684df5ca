package sources

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// ErrUnauthorized means the request's signature, token or timestamp did not verify.
// The receiver answers 401 without saying which.
var ErrUnauthorized = errors.New("unauthorized")

// A Source verifies and parses one provider's webhooks.
type Source interface {
	// Name is the route segment: POST /hooks/<name>, and the event's Source.
	Name() string
	// Parse verifies r (whose body has been read into body) and returns what it
	// carries. Errors wrap ErrUnauthorized (401) or events.ErrInvalid (400).
	Parse(r *http.Request, body []byte, now time.Time) (Parsed, error)
}

// Parsed is the result of one webhook request.
type Parsed struct {
	// Events to publish, each with a stable ID (the provider's event id, or the
	// sha256 of the raw body when the provider gives none).
	Events []events.Event
	// Ignored counts well-formed items of event types the daemon does not act on:
	// acknowledged (2xx) and counted, never an error, since providers disable
	// hooks that fail.
	Ignored int
}

// Handshaker is implemented by sources whose provider sends requests that are not
// events: Okta's one-time GET verification, HiBob's ping, Gusto's verification
// POST. The receiver routes GET /hooks/<name> to such sources too and calls
// Handshake before Parse; when it returns true the response has been written.
// body is nil for GET requests.
type Handshaker interface {
	Handshake(w http.ResponseWriter, r *http.Request, body []byte) bool
}

// Authenticator is implemented by sources whose proof is a static header
// (Personio, Rippling, Okta): the receiver calls Authenticate before it reads
// the body, so an unauthenticated sender cannot make it read a megabyte. An
// error answers 401.
type Authenticator interface {
	Authenticate(r *http.Request) error
}

// Gate is implemented by sources whose route exists only in some states
// (Gusto: only once a key is configured or while an operator has armed it for
// the verification POST). While Open returns false the route answers 404, as
// a source that is not enabled does.
type Gate interface {
	Open(ctx context.Context) bool
}

// PartialDelivery is implemented by sources whose provider does not retry a 4xx
// (Okta): an event of a delivery that fails the receiver's checks is dropped
// and counted, and the others are published, instead of refusing the whole
// delivery with 400.
type PartialDelivery interface {
	PartialDelivery() bool
}

// Config is what every source constructor takes. Secrets are the active secrets
// (several during rotation); APIURL/APIToken give access to the provider's API
// for re-reading thin payloads (optional).
type Config struct {
	Secrets  []string
	APIURL   string
	APIToken string
	Logger   *slog.Logger
	Now      func() time.Time
}
