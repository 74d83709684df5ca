package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio/personiotest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling/ripplingtest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
	"github.com/sentry-jml/sentry-jml/internal/policy"
)

type unresolvedList struct {
	mu    sync.Mutex
	evs   []events.Event
	fails int // the first calls that fail (the store is down)
}

func (u *unresolvedList) RecordUnresolved(_ context.Context, ev events.Event, _ string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fails > 0 {
		u.fails--
		return errors.New("unresolved list unavailable")
	}
	u.evs = append(u.evs, ev)
	return nil
}

func (u *unresolvedList) len() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.evs) }

func thin(id, source string, typ events.Type, status events.Status) events.Event {
	return events.Event{ID: "thin-" + source + "-" + id + "-" + string(typ), Source: source, Type: typ, OccurredAt: time.Now().UTC(), ReceivedAt: time.Now().UTC(),
		Person: events.Person{ID: id, Status: status}}
}

// A thin payload (an id, no email) is re-read from the provider's API, then converged.
func TestThinPayloadResolvedThroughProviderAPI(t *testing.T) {
	sim := ripplingtest.New(t)
	sim.Add(resolvetest.Person{ID: "emp-42", Email: "jane.doe@acme.test", FirstName: "Jane", LastName: "Doe", State: resolvetest.Terminated})
	r, err := rippling.NewResolver(resolve.Config{BaseURL: sim.URL, Token: sim.Token, HTTPClient: sim.Client()})
	if err != nil {
		t.Fatal(err)
	}
	unres := &unresolvedList{}
	h := startWith(t, policy.Default(), resolve.BySource{"rippling": r}, unres)
	h.publishEvent(t, thin("emp-42", "rippling", events.Leaver, events.Terminated))
	eventually(t, "jane is removed", func() bool { _, ok := h.sb.Member("jane.doe@acme.test"); return !ok })
	if unres.len() != 0 {
		t.Fatalf("%d unresolved", unres.len())
	}
}

// Rippling is unsigned: a termination the provider does not confirm is not applied.
func TestUnsignedTerminationCheckedWithProvider(t *testing.T) {
	sim := ripplingtest.New(t)
	sim.Add(resolvetest.Person{ID: "emp-7", Email: "bob.martin@acme.test", FirstName: "Bob", LastName: "Martin", State: resolvetest.Active})
	r, _ := rippling.NewResolver(resolve.Config{BaseURL: sim.URL, Token: sim.Token, HTTPClient: sim.Client()})
	h := startWith(t, policy.Default(), resolve.BySource{"rippling": r}, &unresolvedList{})
	ev := thin("emp-7", "rippling", events.Leaver, events.Terminated)
	ev.Person.Email = "bob.martin@acme.test"
	h.publishEvent(t, ev)
	h.quiet(t)
	if _, ok := h.sb.Member("bob.martin@acme.test"); !ok {
		t.Fatal("an unconfirmed termination from an unsigned source removed the member")
	}
	if n := len(sim.Requests()); n == 0 {
		t.Fatal("the provider was not asked")
	}
}

// Without API access, a thin payload is listed as unresolved and acknowledged.
func TestThinPayloadWithoutAPIIsListed(t *testing.T) {
	unres := &unresolvedList{}
	h := startWith(t, policy.Default(), resolve.BySource{}, unres)
	h.publishEvent(t, thin("E-999", "bamboohr", events.Leaver, events.Terminated))
	h.quiet(t)
	if unres.len() != 1 || unres.evs[0].Person.ID != "E-999" {
		t.Fatalf("unresolved %+v", unres.evs)
	}
}

// An event whose listing as unresolved failed is retried until it is listed:
// it is not recorded as processed before that.
func TestUnresolvedListingFailureIsRetried(t *testing.T) {
	unres := &unresolvedList{fails: 1}
	h := startWith(t, policy.Default(), resolve.BySource{}, unres)
	h.publishEvent(t, thin("E-998", "bamboohr", events.Leaver, events.Terminated))
	eventually(t, "the event is listed after the failure", func() bool { return unres.len() == 1 })
	h.quiet(t)
	if unres.len() != 1 || unres.evs[0].Person.ID != "E-998" {
		t.Fatalf("unresolved %+v", unres.evs)
	}
}

// A provider 404 confirms nothing: an unsigned termination for a person the
// provider does not know is not applied, and is listed as unresolved.
func TestUnsignedTerminationUnknownToProviderNotApplied(t *testing.T) {
	sim := personiotest.New(t) // knows nobody: every read is a 404
	r, err := personio.NewResolver(resolve.Config{BaseURL: sim.URL, Token: sim.Token, HTTPClient: sim.Client()})
	if err != nil {
		t.Fatal(err)
	}
	unres := &unresolvedList{}
	h := startWith(t, policy.Default(), resolve.BySource{"personio": r}, unres)
	ev := thin("P-404", "personio", events.Leaver, events.Terminated)
	ev.Person.Email = "bob.martin@acme.test"
	h.publishEvent(t, ev)
	h.quiet(t)
	if _, ok := h.sb.Member("bob.martin@acme.test"); !ok {
		t.Fatal("a termination the provider does not confirm (404) removed the member")
	}
	if unres.len() != 1 {
		t.Fatalf("%d unresolved, want the unconfirmed termination listed", unres.len())
	}
}

// TestStatuslessJoinerWithoutAPIIsListed: BambooHR's "created" carries no
// status; without its API the worker cannot know the person is active. The
// joiner used to be logged in_sync and never invited; it is listed as
// unresolved (and nobody is invited on a guess).
func TestStatuslessJoinerWithoutAPIIsListed(t *testing.T) {
	unres := &unresolvedList{}
	h := startWith(t, policy.Default(), resolve.BySource{}, unres)
	ev := thin("E-777", "bamboohr", events.Joiner, "")
	ev.Person.Email = "new.joiner@acme.test"
	h.publishEvent(t, ev)
	h.quiet(t)
	if unres.len() != 1 || unres.evs[0].Person.ID != "E-777" {
		t.Fatalf("unresolved %+v, want the joiner listed", unres.evs)
	}
	if _, ok := h.sb.Member("new.joiner@acme.test"); ok {
		t.Fatal("a status-less joiner was invited")
	}
	// With a status the joiner is invited as before.
	ok := thin("E-778", "bamboohr", events.Joiner, events.Active)
	ok.Person.Email = "other.joiner@acme.test"
	h.publishEvent(t, ok)
	h.quiet(t)
	if _, in := h.sb.Member("other.joiner@acme.test"); !in || unres.len() != 1 {
		t.Fatalf("an active joiner: invited=%v unresolved=%d", in, unres.len())
	}
}
