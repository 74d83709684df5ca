package jsstate

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// createAttempt bounds one create-or-update call on JetStream; a replicated
// (R3) stream on a busy cluster can take longer than the client's 5 s default.
const createAttempt = 15 * time.Second

// createRetryFor is how long opening a bucket or stream keeps retrying a
// timed-out create before the process gives up (and its supervisor restarts it).
const createRetryFor = 2 * time.Minute

// withCreateRetry runs create until it succeeds, fails with something other
// than a timeout, ctx ends, or createRetryFor has passed. Creating a bucket or
// stream is idempotent (create-or-update), so a retry after a timeout — the
// server may have finished the first one — is safe.
func withCreateRetry[T any](ctx context.Context, create func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(createRetryFor)
	delay := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, createAttempt)
		v, err := create(actx)
		cancel()
		if err == nil || !timedOut(err) || ctx.Err() != nil || time.Now().Add(delay).After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}
