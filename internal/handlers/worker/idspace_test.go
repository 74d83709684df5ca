package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/roster"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

func evAt(src, id string, typ events.Type, at time.Time, p events.Person) events.Event {
	return events.Event{ID: id, Source: src, Type: typ, OccurredAt: at, ReceivedAt: at, Person: p}
}

func (h *harness) mustGet(t *testing.T, key string) state.PersonRecord {
	t.Helper()
	rec, err := h.dir.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("directory %s: %v", key, err)
	}
	return rec
}

func (h *harness) absent(t *testing.T, key string) {
	t.Helper()
	if _, err := h.dir.Get(context.Background(), key); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("directory %s exists (err %v), want no such person", key, err)
	}
}

func (h *harness) member(t *testing.T, email string, want bool) {
	t.Helper()
	if _, ok := h.sb.Member(email); ok != want {
		t.Fatalf("%s in Sentry = %v, want %v", email, ok, want)
	}
}

// The bug of issue 13: a Gusto event for E-4004 landed on the person the
// generic source keyed by E-4004. Ids are namespaced per source: these are
// two people, and a leaver at one source removes only its own person.
func TestSameIDAtTwoSourcesIsTwoPeople(t *testing.T) {
	h := start(t)
	t0 := time.Now().UTC().Add(-time.Hour)
	h.publishEvent(t, evAt("generic", "g1", events.Joiner, t0, events.Person{ID: "E-4004", Email: "jane.doe@acme.test", Status: events.Active}))
	h.publishEvent(t, evAt("gusto", "u1", events.Joiner, t0, events.Person{ID: "E-4004", Email: "bob.martin@acme.test", Status: events.Active}))
	h.quiet(t)
	if rec := h.mustGet(t, "id:E-4004"); rec.Person.Email != "jane.doe@acme.test" {
		t.Fatalf("generic E-4004 = %+v", rec.Person)
	}
	if rec := h.mustGet(t, "gusto:E-4004"); rec.Person.Email != "bob.martin@acme.test" || rec.IDs["gusto"] != "E-4004" {
		t.Fatalf("gusto E-4004 = %+v (ids %v)", rec.Person, rec.IDs)
	}
	// A thin Gusto termination, the id alone.
	h.publishEvent(t, evAt("gusto", "u2", events.Leaver, time.Now().UTC(), events.Person{ID: "E-4004", Status: events.Terminated}))
	h.quiet(t)
	h.member(t, "bob.martin@acme.test", false)
	h.member(t, "jane.doe@acme.test", true)
	if rec := h.mustGet(t, "id:E-4004"); rec.Person.Status != events.Active {
		t.Fatalf("the Gusto leaver changed the generic person: %+v", rec.Person)
	}
	// And the other way round.
	h.publishEvent(t, evAt("generic", "g2", events.Leaver, time.Now().UTC(), events.Person{ID: "E-4004", Status: events.Terminated}))
	h.quiet(t)
	h.member(t, "jane.doe@acme.test", false)
	if k, err := h.dir.Resolve(context.Background(), state.SharedIDSpace, "E-4004"); err != nil || k != "id:E-4004" {
		t.Fatalf("hr link of E-4004 = %q, %v", k, err)
	}
	if k, err := h.dir.Resolve(context.Background(), "gusto", "E-4004"); err != nil || k != "gusto:E-4004" {
		t.Fatalf("gusto link of E-4004 = %q, %v", k, err)
	}
}

// The roster and the generic source share one id space: a roster row and a
// generic event with the same id are one person, whichever came first.
func TestGenericAndRosterIDsAreOnePerson(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-time.Hour)
	rows, err := roster.Parse("r", strings.NewReader("id,email,name,status,department,title,groups,manager_email\nE-5,alice.nguyen@acme.test,Alice,active,Payments,,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roster.Import(ctx, h.dir, rows, roster.ImportOptions{AsOf: t0}); err != nil {
		t.Fatal(err)
	}
	h.publishEvent(t, evAt("generic", "g1", events.Leaver, time.Now().UTC(), events.Person{ID: "E-5", Status: events.Terminated}))
	h.quiet(t)
	rec := h.mustGet(t, "id:E-5")
	if rec.Person.Status != events.Terminated || rec.Person.Department != "Payments" || rec.IDs[state.SharedIDSpace] != "E-5" {
		t.Fatalf("E-5 = %+v (ids %v)", rec.Person, rec.IDs)
	}
	h.member(t, "alice.nguyen@acme.test", false)
	n := 0
	for r, err := range h.dir.List(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if strings.EqualFold(r.Person.Email, "alice.nguyen@acme.test") || r.Person.ID == "E-5" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d records for E-5, want 1", n)
	}
}

// An operator may declare that another source shares the generic source's
// ids (JML_SHARED_ID_SPACE): then its events are about the same people.
// Without the declaration they are not.
func TestDeclaredSourceSharesTheIDSpace(t *testing.T) {
	t0 := time.Now().UTC().Add(-time.Hour)
	joiner := evAt("generic", "g1", events.Joiner, t0, events.Person{ID: "E-6", Email: "carlos.garcia@acme.test", Status: events.Active})

	t.Run("declared", func(t *testing.T) {
		spaces, err := state.NewIDSpaces([]string{"generic", "roster", "bamboohr"})
		if err != nil {
			t.Fatal(err)
		}
		h := startHarness(t, policy.Default(), nil, nil, nil, func(o *worker.Options) { o.IDSpaces = spaces })
		h.publishEvent(t, joiner)
		h.quiet(t)
		h.publishEvent(t, evAt("bamboohr", "b1", events.Leaver, time.Now().UTC(), events.Person{ID: "E-6", Status: events.Terminated}))
		h.quiet(t)
		h.member(t, "carlos.garcia@acme.test", false)
		if rec := h.mustGet(t, "id:E-6"); rec.Person.Status != events.Terminated {
			t.Fatalf("E-6 = %+v", rec.Person)
		}
		h.absent(t, "bamboohr:E-6")
	})
	t.Run("not declared", func(t *testing.T) {
		h := start(t)
		h.publishEvent(t, joiner)
		h.quiet(t)
		h.publishEvent(t, evAt("bamboohr", "b1", events.Leaver, time.Now().UTC(), events.Person{ID: "E-6", Status: events.Terminated}))
		h.quiet(t)
		h.member(t, "carlos.garcia@acme.test", true)
		if rec := h.mustGet(t, "id:E-6"); rec.Person.Status != events.Active {
			t.Fatalf("E-6 = %+v", rec.Person)
		}
		if rec := h.mustGet(t, "bamboohr:E-6"); rec.Person.Status != events.Terminated || rec.Person.Email != "" {
			t.Fatalf("bamboohr:E-6 = %+v", rec.Person)
		}
	})
}

// Records written before ids were namespaced, as the old code wrote them:
// every HR id keyed "id:<id>", links by source name. They keep working:
// events of their source find them (by the old link, or by the id the
// record holds when the link is missing), the shared space's old links are
// followed and rewritten, snapshots stay under the old key, and a person of
// the shared space with the id a Gusto record holds gets a key of its own.
func TestRecordsKeyedTheOldWayKeepWorking(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-2 * time.Hour)
	old := func(key, src string, p events.Person, links ...string) {
		t.Helper()
		if _, _, err := h.dir.Apply(ctx, key, p, state.Version{OccurredAt: t0, Source: src, Seq: 1}, "old"); err != nil {
			t.Fatal(err)
		}
		if err := h.dir.Link(ctx, "email", p.Email, key); err != nil {
			t.Fatal(err)
		}
		for _, s := range links {
			if err := h.dir.Link(ctx, s, p.ID, key); err != nil {
				t.Fatal(err)
			}
		}
	}
	old("id:G-1", "gusto", events.Person{ID: "G-1", Email: "diana.prince@acme.test", Status: events.Active}, "gusto")
	old("id:G-2", "gusto", events.Person{ID: "G-2", Email: "ethan.hunt@acme.test", Status: events.Active}) // link lost
	old("id:E-77", "generic", events.Person{ID: "E-77", Email: "fatima.khan@acme.test", Status: events.Active}, "generic")

	now := time.Now().UTC()
	h.publishEvent(t, evAt("gusto", "u1", events.Leaver, now, events.Person{ID: "G-1", Status: events.Terminated}))
	h.publishEvent(t, evAt("gusto", "u2", events.Leaver, now, events.Person{ID: "G-2", Status: events.Terminated}))
	h.publishEvent(t, evAt("roster", "r1", events.Update, now, events.Person{ID: "E-77", Department: "Data"}))
	h.quiet(t)
	for _, c := range []struct{ key, email string }{{"id:G-1", "diana.prince@acme.test"}, {"id:G-2", "ethan.hunt@acme.test"}} {
		if rec := h.mustGet(t, c.key); rec.Person.Status != events.Terminated {
			t.Fatalf("%s = %+v", c.key, rec.Person)
		}
		h.member(t, c.email, false)
		if snap, err := h.records.Snapshots.Latest(ctx, c.key); err != nil || !strings.EqualFold(snap.Email, c.email) {
			t.Fatalf("snapshot under the old key %s = %+v, %v", c.key, snap, err)
		}
	}
	h.absent(t, "gusto:G-1")
	h.absent(t, "gusto:G-2")
	if k, err := h.dir.Resolve(ctx, "gusto", "G-2"); err != nil || k != "id:G-2" {
		t.Fatalf("gusto link of G-2 = %q, %v (want it rewritten to the old key)", k, err)
	}
	if rec := h.mustGet(t, "id:E-77"); rec.Person.Department != "Data" || rec.IDs[state.SharedIDSpace] != "E-77" {
		t.Fatalf("E-77 = %+v (ids %v)", rec.Person, rec.IDs)
	}
	if k, err := h.dir.Resolve(ctx, state.SharedIDSpace, "E-77"); err != nil || k != "id:E-77" {
		t.Fatalf("hr link of E-77 = %q, %v", k, err)
	}
	// Someone else with the id G-2 in the shared space: not Gusto's person.
	h.publishEvent(t, evAt("generic", "g1", events.Joiner, time.Now().UTC(), events.Person{ID: "G-2", Email: "george.miller@acme.test", Status: events.Active}))
	h.quiet(t)
	if rec := h.mustGet(t, "hr:G-2"); rec.Person.Email != "george.miller@acme.test" || rec.Person.Status != events.Active {
		t.Fatalf("hr:G-2 = %+v", rec.Person)
	}
	if rec := h.mustGet(t, "id:G-2"); rec.Person.Email != "ethan.hunt@acme.test" || rec.Person.Status != events.Terminated {
		t.Fatalf("Gusto's old record changed: %+v", rec.Person)
	}
	h.member(t, "george.miller@acme.test", true)
}

// A record stored before event times were bounded, with a version in the
// year 5138 (a forged rehire), does not pin its person: a later, properly
// dated leaver wins and the member is removed. So does an event of that
// kind still in the stream.
func TestFarFutureVersionDoesNotPin(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	far := time.Date(5138, 1, 1, 0, 0, 0, 0, time.UTC)
	p := events.Person{ID: "E-5138", Email: "hannah.schmidt@acme.test", Status: events.Active}
	if _, _, err := h.dir.Apply(ctx, "id:E-5138", p, state.Version{OccurredAt: far, Source: "generic", Seq: 1}, "forged"); err != nil {
		t.Fatal(err)
	}
	if err := h.dir.Link(ctx, "email", p.Email, "id:E-5138"); err != nil {
		t.Fatal(err)
	}
	h.publishEvent(t, evAt("generic", "g1", events.Leaver, time.Now().UTC(), events.Person{ID: "E-5138", Status: events.Terminated}))
	h.quiet(t)
	rec := h.mustGet(t, "id:E-5138")
	if rec.Person.Status != events.Terminated || rec.Version.OccurredAt.Year() > 3000 {
		t.Fatalf("E-5138 = %+v at %s, want terminated by the leaver", rec.Person, rec.Version.OccurredAt)
	}
	h.member(t, "hannah.schmidt@acme.test", false)

	// A forged rehire already in the stream (accepted before the receiver
	// refused such times) is applied as of now.
	h.publishEvent(t, evAt("generic", "g2", events.Rehire, far, events.Person{ID: "E-5139", Email: "ivan.petrov@acme.test", Status: events.Active}))
	h.quiet(t)
	if rec := h.mustGet(t, "id:E-5139"); rec.Version.OccurredAt.Year() > 3000 {
		t.Fatalf("E-5139 stored at %s", rec.Version.OccurredAt)
	}
	h.publishEvent(t, evAt("generic", "g3", events.Leaver, time.Now().UTC().Add(time.Second), events.Person{ID: "E-5139", Status: events.Terminated}))
	h.quiet(t)
	h.member(t, "ivan.petrov@acme.test", false)
}
