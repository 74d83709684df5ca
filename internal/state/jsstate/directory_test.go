package jsstate_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

func openDir(t *testing.T) *jsstate.Directory {
	t.Helper()
	_, _, js := natstest.Run(t)
	d, err := jsstate.OpenDirectory(context.Background(), js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func TestDirectoryVersioning(t *testing.T) {
	ctx := context.Background()
	d := openDir(t)
	if _, err := d.Get(ctx, "id:E-1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
	joiner := events.Person{ID: "E-1", Email: "jane@acme.com", Status: events.Active, Department: "Payments", Groups: []string{"eng"}}
	rec, applied, err := d.Apply(ctx, "id:E-1", joiner, state.Version{OccurredAt: t0, Source: "generic", Seq: 1}, "e1")
	if err != nil || !applied || rec.Person.Status != events.Active {
		t.Fatalf("joiner: %+v %v %v", rec, applied, err)
	}
	leaver := events.Person{ID: "E-1", Status: events.Terminated}
	rec, applied, err = d.Apply(ctx, "id:E-1", leaver, state.Version{OccurredAt: t0.Add(time.Hour), Source: "generic", Seq: 3}, "e3")
	if err != nil || !applied || rec.Person.Status != events.Terminated || rec.Person.Email != "jane@acme.com" || rec.Person.Department != "Payments" {
		t.Fatalf("leaver must merge over joiner: %+v %v %v", rec, applied, err)
	}
	// A late mover from before the termination sets the field nobody set since
	// (department) but not the status, which a newer event set.
	mover := events.Person{ID: "E-1", Status: events.Active, Department: "Risk"}
	rec, applied, err = d.Apply(ctx, "id:E-1", mover, state.Version{OccurredAt: t0.Add(30 * time.Minute), Source: "generic", Seq: 4}, "e2")
	if err != nil || !applied || rec.Person.Status != events.Terminated || rec.Person.Department != "Risk" {
		t.Fatalf("late event: %+v %v %v", rec, applied, err)
	}
	got, err := d.Get(ctx, "id:E-1")
	if err != nil || got.Person.Status != events.Terminated || got.LastEventID != "e3" || got.Version.Seq != 3 {
		t.Fatalf("stored: %+v %v", got, err)
	}
	// The same late event again changes nothing.
	if _, applied, _ := d.Apply(ctx, "id:E-1", mover, state.Version{OccurredAt: t0.Add(30 * time.Minute), Source: "generic", Seq: 4}, "e2"); applied {
		t.Fatal("re-applied event reported a change")
	}
	// Same time, same source: the later stream sequence wins, the earlier loses.
	if rec, _, _ := d.Apply(ctx, "id:E-1", mover, state.Version{OccurredAt: t0.Add(time.Hour), Source: "generic", Seq: 2}, "e-old"); rec.Person.Status != events.Terminated {
		t.Fatal("lower sequence at equal time overwrote the status")
	}
	// Same time, other source: terminated wins the tie.
	if rec, _, _ := d.Apply(ctx, "id:E-1", mover, state.Version{OccurredAt: t0.Add(time.Hour), Source: "okta", Seq: 99}, "o1"); rec.Person.Status != events.Terminated {
		t.Fatal("active from another source beat terminated at the same time")
	}
}

func TestDirectoryConcurrentUpdatesLoseNothing(t *testing.T) {
	ctx := context.Background()
	d := openDir(t)
	if _, _, err := d.Apply(ctx, "k", events.Person{Email: "a@b.co", Status: events.Active}, state.Version{OccurredAt: t0, Source: "generic"}, "e"); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.Update(ctx, "k", func(r state.PersonRecord) (state.PersonRecord, error) {
				if r.Person.Attributes == nil {
					r.Person.Attributes = map[string]string{}
				}
				r.Person.Attributes[fmt.Sprint(i)] = "x"
				return r, nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := d.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Person.Attributes) != n {
		t.Fatalf("lost updates: %d of %d attributes", len(got.Person.Attributes), n)
	}
	if _, err := d.Update(ctx, "missing", func(r state.PersonRecord) (state.PersonRecord, error) { return r, nil }); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("update of missing record: %v", err)
	}
}
