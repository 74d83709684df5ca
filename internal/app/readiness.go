package app

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/internal/natsconn"
)

// Readiness collects what /readyz reports: NATS connected (not disconnected,
// not reconnecting) and, for processes that call Sentry, the token accepted at
// the last check. Live is the /healthz side: it fails only when the NATS
// connection is closed for good, which no waiting repairs.
type Readiness struct {
	mu        sync.Mutex
	nc        *nats.Conn
	sentryErr error
	checked   bool
	needs     bool
}

// NewReadiness watches nc; needsSentry makes the Sentry token check part of it.
func NewReadiness(nc *nats.Conn, needsSentry bool) *Readiness {
	return &Readiness{nc: nc, needs: needsSentry}
}

// SetSentry records the result of the latest token check.
func (r *Readiness) SetSentry(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sentryErr, r.checked = err, true
}

// Check returns nil when ready, else the reason.
func (r *Readiness) Check(context.Context) error {
	if r.nc != nil && r.nc.Status() != nats.CONNECTED {
		return fmt.Errorf("nats: %s", r.nc.Status())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.needs {
		return nil
	}
	if !r.checked {
		return errors.New("sentry: token not checked yet")
	}
	if r.sentryErr != nil {
		return fmt.Errorf("sentry: %w", r.sentryErr)
	}
	return nil
}

// Live returns nil unless the NATS connection is closed for good (the server
// closed it after a protocol error, or it was closed): the process cannot
// recover on its own, so /healthz fails and the orchestrator restarts it.
func (r *Readiness) Live(context.Context) error { return natsconn.Live(r.nc) }
