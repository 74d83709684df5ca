// Package safetytest is for tests only: a sentry.Gate that admits every
// mutation, for unit tests of code above the Sentry client (planning,
// applying, the client itself) that are not about the safety gate. Tests of
// pause, brakes and leases use the real internal/safety gate on an embedded
// NATS server. Production code never imports this package (a test in
// package safety checks that).
package safetytest

import (
	"context"
	"sync"

	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// Gate admits everything and remembers what it admitted.
type Gate struct {
	mu   sync.Mutex
	seen []sentry.Mutation
}

// Admit implements sentry.Gate.
func (g *Gate) Admit(_ context.Context, m sentry.Mutation) (func(), error) {
	g.mu.Lock()
	g.seen = append(g.seen, m)
	g.mu.Unlock()
	return func() {}, nil
}

// Admitted returns the mutations admitted so far.
func (g *Gate) Admitted() []sentry.Mutation {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]sentry.Mutation(nil), g.seen...)
}
