package sources

import (
	"errors"
	"net/http"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// ErrUnauthorized means the request's signature, token or timestamp did not verify.
// The receiver answers 401 without saying which.
var ErrUnauthorized = errors.New("unauthorized")

// A Source verifies and parses one provider's webhooks.
type Source interface {
	// Name is the route segment: POST /hooks/<name>.
	Name() string
	// Parse verifies r (whose body has been read into body) and returns the events
	// it carries. Errors wrap ErrUnauthorized (401) or events.ErrInvalid (400).
	Parse(r *http.Request, body []byte, now time.Time) ([]events.Event, error)
}
