package app

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// Readiness collects what /readyz reports: NATS reachable and, for processes that
// call Sentry, the token accepted at the last check.
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
