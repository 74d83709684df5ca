package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// pausable simulates a process pause (SIGSTOP, a long GC, a VM migration): while
// paused, lease renewals hang and the converger is stuck just before its
// pre-mutation lease check.
type pausable struct {
	state.Leaser
	once    sync.Once
	paused  chan struct{} // closed when the pause begins
	resume  chan struct{} // closed to resume
	checked chan error    // the lease check's result after resuming
}

func (p *pausable) Renew(ctx context.Context, l state.Lease, ttl time.Duration) (state.Lease, error) {
	select {
	case <-p.paused:
		select {
		case <-p.resume:
		case <-ctx.Done():
			return l, ctx.Err()
		}
	default:
	}
	return p.Leaser.Renew(ctx, l, ttl)
}

type pausingConverger struct {
	inner worker.Converger
	p     *pausable
}

func (c pausingConverger) Converge(ctx context.Context, rec state.PersonRecord, check converge.LeaseCheck) (converge.Result, error) {
	paused := func(ctx context.Context) error {
		first := false
		c.p.once.Do(func() { first = true; close(c.p.paused) })
		if first {
			<-c.p.resume
			err := check(ctx)
			c.p.checked <- err
			return err
		}
		return check(ctx)
	}
	return c.inner.Converge(ctx, rec, paused)
}

// TestPausedWorkerMakesNoMutation: a worker paused past its lease makes no
// Sentry change after it resumes; the replica that took over does it once.
func TestPausedWorkerMakesNoMutation(t *testing.T) {
	h := start(t) // the harness's own worker stays as the healthy replica "B"…
	h.stop(t)     // …but is stopped first so that "A" gets the message.
	p := &pausable{Leaser: h.coord, paused: make(chan struct{}), resume: make(chan struct{}), checked: make(chan error, 1)}
	h.worker(t, "A", p, func(c worker.Converger) worker.Converger { return pausingConverger{inner: c, p: p} })
	now := time.Now().UTC()
	h.publishEvent(t, events.Event{ID: "pause-leaver", Source: "generic", Type: events.Leaver, OccurredAt: now, ReceivedAt: now,
		Person: events.Person{Email: "jane.doe@acme.test", Status: events.Terminated}})
	select {
	case <-p.paused:
	case <-time.After(10 * time.Second):
		t.Fatal("worker A never reached the mutation")
	}
	// B starts while A is paused; after A's lease and the ack wait run out, B
	// gets the redelivery and removes jane.
	h.worker(t, "B", h.coord, nil)
	eventually(t, "B removes jane", func() bool { _, ok := h.sb.Member("jane.doe@acme.test"); return !ok })
	close(p.resume)
	if err := <-p.checked; err == nil {
		t.Fatal("A's lease check passed after the pause")
	}
	h.quiet(t)
	if n := h.sb.Stats().Mutations["member.remove"]["jane.doe@acme.test"]; n != 1 {
		t.Fatalf("jane removed %d times", n)
	}
}
