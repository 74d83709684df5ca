package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// checkCounter is a leaser that counts the pre-mutation lease checks.
type checkCounter struct {
	state.Leaser
	checks atomic.Int64
}

func (c *checkCounter) Check(ctx context.Context, l state.Lease) error {
	c.checks.Add(1)
	return c.Leaser.Check(ctx, l)
}

// One lease check per Sentry mutation, made right before the request leaves
// (the client's pre-send check), not a second one before each step.
func TestOneLeaseCheckPerMutation(t *testing.T) {
	var leases *checkCounter
	h := startHarness(t, policy.Default(), nil, nil, nil, func(o *worker.Options) {
		leases = &checkCounter{Leaser: o.Leases}
		o.Leases = leases
	})
	h.publish(t, "lean-leaver", "jane.doe@acme.test")
	eventually(t, "the leaver is removed", func() bool {
		_, ok := h.sb.Member("jane.doe@acme.test")
		return !ok
	})
	muts := 0
	for _, byEmail := range h.sb.Stats().Mutations {
		for _, n := range byEmail {
			muts += n
		}
	}
	if got := leases.checks.Load(); muts != 1 || got != int64(muts) {
		t.Fatalf("%d lease checks for %d mutations; want one each", got, muts)
	}
}

// linkCounter is a directory that counts the email links written.
type linkCounter struct {
	*jsstate.Directory
	emailLinks atomic.Int64
}

func (d *linkCounter) Link(ctx context.Context, source, sourceID, personKey string) error {
	if source == "email" {
		d.emailLinks.Add(1)
	}
	return d.Directory.Link(ctx, source, sourceID, personKey)
}

// Events that carry the email the link already points at write no link; a
// changed email is linked once.
func TestEmailLinkWrittenOnlyWhenItChanges(t *testing.T) {
	var dir *linkCounter
	h := startHarness(t, policy.Default(), nil, nil, nil, func(o *worker.Options) {
		dir = &linkCounter{Directory: o.Directory.(*jsstate.Directory)}
		o.Directory = dir
	})
	send := func(id, email, dept string) {
		t.Helper()
		h.publishEvent(t, events.Event{ID: id, Source: "generic", Type: events.Mover, OccurredAt: time.Now().UTC(), ReceivedAt: time.Now().UTC(),
			Person: events.Person{ID: "E-77", Email: email, Status: events.Active, Department: dept}})
		eventually(t, "event "+id+" applied", func() bool {
			key, err := h.dir.Resolve(context.Background(), "hr", "E-77")
			if err != nil {
				return false
			}
			rec, err := h.dir.Get(context.Background(), key)
			return err == nil && rec.LastEventID == id
		})
	}
	send("m1", "ann.lee@acme.test", "Data")
	send("m2", "ann.lee@acme.test", "Payments")
	send("m3", "Ann.Lee@acme.test", "Mobile")
	if n := dir.emailLinks.Load(); n != 0 {
		t.Fatalf("%d email links written for an unchanged email; want 0", n)
	}
	send("m4", "ann.lee2@acme.test", "Mobile")
	send("m5", "ann.lee2@acme.test", "Data")
	if n := dir.emailLinks.Load(); n != 1 {
		t.Fatalf("%d email links written after one change of email; want 1", n)
	}
	key, err := h.dir.Resolve(context.Background(), "email", "ann.lee2@acme.test")
	if err != nil || !strings.HasPrefix(key, "hr:") && !strings.HasPrefix(key, "id:") {
		t.Fatalf("email link = %q, %v", key, err)
	}
}
