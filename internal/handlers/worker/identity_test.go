package worker_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// One human seen by an HR system (keyed by its id) and by an identity
// provider (which knows the email and its own user id) is one directory
// person, whichever arrives first; thin events that carry only a source id
// find that person through the link table.
func TestHRAndIdPEventsAreOnePerson(t *testing.T) {
	t0 := time.Now().UTC().Add(-time.Hour)
	hr := func(at time.Duration, id string, p events.Person) events.Event {
		return events.Event{ID: id, Source: "bamboohr", Type: events.Update, OccurredAt: t0.Add(at), ReceivedAt: t0.Add(at), Person: p}
	}
	okta := func(at time.Duration, id string, p events.Person) events.Event {
		return events.Event{ID: id, Source: "okta", Type: events.Update, OccurredAt: t0.Add(at), ReceivedAt: t0.Add(at), Person: p}
	}
	get := func(t *testing.T, h *harness, key string) (state.PersonRecord, bool) {
		t.Helper()
		rec, err := h.dir.Get(context.Background(), key)
		if errors.Is(err, state.ErrNotFound) {
			return rec, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return rec, true
	}

	t.Run("HR first", func(t *testing.T) {
		h := start(t)
		h.publishEvent(t, hr(0, "bhr-1", events.Person{ID: "E100", Email: "ann.lee@acme.test", Status: events.Active, Department: "Payments"}))
		h.quiet(t)
		// Okta's profile says Marketing (HR owns the department) and, later,
		// that the account is deactivated (IdPs may set the status).
		h.publishEvent(t, okta(time.Minute, "okta-1", events.Person{Email: "Ann.Lee@acme.test", Department: "Marketing", Groups: []string{"eng"},
			Attributes: map[string]string{"okta_id": "00u1"}}))
		h.quiet(t)
		// A thin Okta event: its user id alone.
		h.publishEvent(t, okta(2*time.Minute, "okta-2", events.Person{Status: events.Terminated, Attributes: map[string]string{"okta_id": "00u1"}}))
		h.quiet(t)
		rec, ok := get(t, h, "bamboohr:E100")
		if !ok {
			t.Fatal("the HR person is missing")
		}
		if rec.Person.Department != "Payments" || !slices.Equal(rec.Person.Groups, []string{"eng"}) || rec.Person.Status != events.Terminated {
			t.Fatalf("person = %+v, want HR's department, Okta's groups, terminated by Okta's thin event", rec.Person)
		}
		if _, ok := get(t, h, "email:ann.lee@acme.test"); ok {
			t.Fatal("the Okta events made a second person keyed by email")
		}
		if _, ok := h.sb.Member("ann.lee@acme.test"); ok {
			t.Fatal("ann.lee is still in Sentry after the IdP deactivated her")
		}
	})

	t.Run("IdP first", func(t *testing.T) {
		h := start(t)
		h.publishEvent(t, okta(0, "okta-1", events.Person{Email: "bo.kim@acme.test", Status: events.Active, Groups: []string{"data"},
			Attributes: map[string]string{"okta_id": "00u2"}}))
		h.quiet(t)
		h.publishEvent(t, hr(time.Minute, "bhr-1", events.Person{ID: "E200", Email: "bo.kim@acme.test", Department: "Data"}))
		h.quiet(t)
		// A thin HR termination: the employee id alone.
		h.publishEvent(t, hr(2*time.Minute, "bhr-2", events.Person{ID: "E200", Status: events.Terminated}))
		h.quiet(t)
		rec, ok := get(t, h, "email:bo.kim@acme.test")
		if !ok {
			t.Fatal("the person the IdP created is missing")
		}
		if rec.Person.Department != "Data" || !slices.Equal(rec.Person.Groups, []string{"data"}) || rec.Person.Status != events.Terminated || rec.Person.ID != "E200" {
			t.Fatalf("person = %+v, want one person with HR's id and department, Okta's groups, terminated", rec.Person)
		}
		if _, ok := get(t, h, "bamboohr:E200"); ok {
			t.Fatal("the HR events made a second person keyed by the HR id")
		}
		if _, ok := h.sb.Member("bo.kim@acme.test"); ok {
			t.Fatal("bo.kim is still in Sentry after HR terminated him")
		}
	})
}

// A recycled address: the new hire has another HR id than the leaver who
// had the email, so they are two people; the new hire gets the email link.
func TestRecycledEmailIsANewPerson(t *testing.T) {
	h := start(t)
	t0 := time.Now().UTC().Add(-time.Hour)
	ev := func(at time.Duration, id, src string, p events.Person) events.Event {
		return events.Event{ID: id, Source: src, Type: events.Update, OccurredAt: t0.Add(at), ReceivedAt: t0.Add(at), Person: p}
	}
	h.publishEvent(t, ev(0, "b1", "bamboohr", events.Person{ID: "E1", Email: "sam@acme.test", Status: events.Active, Department: "Payments"}))
	h.quiet(t)
	h.publishEvent(t, ev(time.Minute, "b2", "bamboohr", events.Person{ID: "E1", Status: events.Terminated}))
	h.quiet(t)
	h.publishEvent(t, ev(2*time.Minute, "b3", "bamboohr", events.Person{ID: "E2", Email: "sam@acme.test", Status: events.Active, Department: "Data"}))
	h.quiet(t)
	// An IdP event about the address now concerns the new hire.
	h.publishEvent(t, ev(3*time.Minute, "o1", "okta", events.Person{Email: "sam@acme.test", Groups: []string{"data"}, Attributes: map[string]string{"okta_id": "00u9"}}))
	h.quiet(t)
	old, err := h.dir.Get(context.Background(), "bamboohr:E1")
	if err != nil {
		t.Fatal(err)
	}
	if old.Person.Status != events.Terminated || old.Person.Department != "Payments" || old.Person.Groups != nil {
		t.Fatalf("the leaver's record changed: %+v", old.Person)
	}
	hire, err := h.dir.Get(context.Background(), "bamboohr:E2")
	if err != nil {
		t.Fatalf("the new hire has no record of their own: %v", err)
	}
	if hire.Person.Status != events.Active || hire.Person.Department != "Data" || !slices.Equal(hire.Person.Groups, []string{"data"}) {
		t.Fatalf("new hire = %+v", hire.Person)
	}
}

// staleEmailLink answers the first email lookup as if the link did not exist
// yet: what a replica sees when another one links the same new hire at the
// same moment.
type staleEmailLink struct {
	*jsstate.Directory
	mu    sync.Mutex
	stale bool
}

func (d *staleEmailLink) Resolve(ctx context.Context, source, id string) (string, error) {
	d.mu.Lock()
	stale := source == "email" && !d.stale
	if stale {
		d.stale = true
	}
	d.mu.Unlock()
	if stale {
		return "", state.ErrNotFound
	}
	return d.Directory.Resolve(ctx, source, id)
}

// Two first contacts about one new hire, from an identity provider and an
// HR system, processed at the same moment by two replicas: the second one
// loses the email link claim and joins the first one's person instead of
// starting a second record with the same email.
func TestFirstContactRaceMakesOnePerson(t *testing.T) {
	h := start(t)
	t0 := time.Now().UTC().Add(-time.Hour)
	// The identity provider's event made ann a person keyed by email.
	h.publishEvent(t, events.Event{ID: "okta-1", Source: "okta", Type: events.Update, OccurredAt: t0, ReceivedAt: t0,
		Person: events.Person{Email: "ann.lee@acme.test", Groups: []string{"eng"}, Attributes: map[string]string{"okta_id": "00u1"}}})
	h.quiet(t)
	h.stop(t)
	// The HR event is handled by a replica whose email lookup came too early.
	dir := &staleEmailLink{Directory: h.dir}
	w, err := worker.New(worker.Options{JS: h.js, Dedupe: h.coord, Leases: h.coord, Directory: dir, Converger: h.conv, Due: h.records.Due, Owner: "B"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	h.publishEvent(t, events.Event{ID: "bhr-1", Source: "bamboohr", Type: events.Joiner, OccurredAt: t0.Add(time.Minute), ReceivedAt: t0.Add(time.Minute),
		Person: events.Person{ID: "E100", Email: "ann.lee@acme.test", Status: events.Active, Department: "Payments"}})
	eventually(t, "the HR event is applied", func() bool {
		rec, err := h.dir.Get(context.Background(), "email:ann.lee@acme.test")
		return err == nil && rec.Person.ID == "E100"
	})
	dir.mu.Lock()
	looked := dir.stale
	dir.mu.Unlock()
	if !looked {
		t.Fatal("the replica never looked the email up")
	}
	if _, err := h.dir.Get(context.Background(), "bamboohr:E100"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("a second person bamboohr:E100 was made for ann (err %v)", err)
	}
	if k, err := h.dir.Resolve(context.Background(), "bamboohr", "E100"); err != nil || k != "email:ann.lee@acme.test" {
		t.Fatalf("bamboohr link of E100 = %q, %v", k, err)
	}
}
