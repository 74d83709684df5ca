package sources

import (
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
