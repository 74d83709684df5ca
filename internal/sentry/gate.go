package sentry

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Gate admits Sentry mutations. Every request whose method is not GET passes
// it right before it is sent (after any rate-limit wait or retry backoff):
// the client has no other way to change Sentry. A Client without a Gate
// refuses every mutation (fail closed); reads need none.
//
// The daemon's gate (internal/safety) is pause, brakes and lease in one place;
// whatever started the mutation (an event, a reconcile run, an approved plan,
// team structure, token hygiene, the invites job, a DLQ replay) goes through it.
type Gate interface {
	// Admit decides whether m may be sent now. A refusal is an error wrapping
	// a *Refusal (nothing was sent). On success done is called once the
	// request has finished (answered or failed), so a pause can wait for the
	// requests in flight.
	Admit(ctx context.Context, m Mutation) (done func(), err error)
}

// Mutation describes one mutating request for a Gate.
type Mutation struct {
	Method  string // POST, PUT, PATCH, DELETE
	Pattern string // the endpoint pattern, e.g. /api/0/organizations/{org}/members/{member}/
	Path    string // the filled-in path
	// Removal is set for requests that remove a member or an invite (the
	// member DELETE, SCIM's user DELETE, and SCIM's PATCH active=false, which
	// Sentry answers by deleting the member): the brakes count these.
	Removal bool
	// Retry is set on the second and later attempts of one logical call (after
	// a 429, a 5xx or a transport error): the gate checks it again but must
	// not count it twice.
	Retry bool
}

// Refusal kinds.
const (
	RefusedPaused = "paused" // jml pause: every mutation waits
	RefusedBrakes = "brakes" // a removal held by the brakes until `jml approve brakes`
	RefusedLease  = "lease"  // no lease held, or the lease was lost
	RefusedNoGate = "no_gate"
)

// Refusal is a gate's refusal of a mutation. The request was not sent.
type Refusal struct {
	Kind   string
	Reason string
	// RetryAfter is a hint for when asking again may succeed (0: no hint).
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return "mutation refused (" + r.Kind + "): " + r.Reason }

// ErrRefused matches every *Refusal with errors.Is.
var ErrRefused = errors.New("mutation refused by the safety gate")

// Is makes errors.Is(err, ErrRefused) true for a Refusal.
func (r *Refusal) Is(target error) bool { return target == ErrRefused }

// RefusalOf returns the refusal err wraps, if any.
func RefusalOf(err error) (*Refusal, bool) {
	var r *Refusal
	if errors.As(err, &r) {
		return r, true
	}
	return nil, false
}

// admit asks the gate before a mutation is sent.
func (c *Client) admit(ctx context.Context, cl call, path string, retry bool) (func(), error) {
	if c.gate == nil {
		return nil, fmt.Errorf("sentry: %s %s: not sent: %w", cl.method, path,
			&Refusal{Kind: RefusedNoGate, Reason: "this client has no safety gate; it may only read"})
	}
	done, err := c.gate.Admit(ctx, Mutation{Method: cl.method, Pattern: cl.pattern, Path: path,
		Removal: cl.removal, Retry: retry})
	if err != nil {
		return nil, fmt.Errorf("sentry: %s %s: not sent: %w", cl.method, path, err)
	}
	if done == nil {
		done = func() {}
	}
	return done, nil
}
