package state_test

import (
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

func TestIDSpaces(t *testing.T) {
	var def state.IDSpaces
	for src, want := range map[string]string{"generic": "hr", "roster": "hr", "gusto": "gusto", "bamboohr": "bamboohr", "okta": "okta"} {
		if got := def.Space(src); got != want {
			t.Errorf("default Space(%s) = %s, want %s", src, got, want)
		}
	}
	if k := def.Key("hr", "E-1"); k != "id:E-1" {
		t.Errorf("hr key = %s", k)
	}
	if k := def.Key("gusto", "E-1"); k != "gusto:E-1" {
		t.Errorf("gusto key = %s", k)
	}
	decl, err := state.NewIDSpaces([]string{" generic", "roster", "bamboohr", "bamboohr", ""})
	if err != nil {
		t.Fatal(err)
	}
	if decl.Space("bamboohr") != "hr" || decl.Space("gusto") != "gusto" {
		t.Errorf("declared: bamboohr %s, gusto %s", decl.Space("bamboohr"), decl.Space("gusto"))
	}
	if got := decl.Shared(); len(got) != 3 {
		t.Errorf("Shared = %v", got)
	}
	if empty, err := state.NewIDSpaces(nil); err != nil || empty.Space("roster") != "hr" {
		t.Errorf("empty list: %v, %v", empty.Shared(), err)
	}
	for _, bad := range []string{"hr", "email", "id", "Gusto", "a b", "x:y"} {
		if _, err := state.NewIDSpaces([]string{"generic", bad}); err == nil {
			t.Errorf("NewIDSpaces accepted %q", bad)
		}
	}
}

// Records written before ids were namespaced carry no IDs: the key, the id
// field and the source that set it say which space they belong to.
func TestIDSpacesOfOldRecords(t *testing.T) {
	var s state.IDSpaces
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := func(key, src string, p events.Person) state.PersonRecord {
		r, _ := state.ApplyEvent(state.PersonRecord{}, key, p, state.Version{OccurredAt: t0, Source: src, Seq: 1}, "e")
		return r
	}
	gusto := rec("id:G-1", "gusto", events.Person{ID: "G-1", Email: "a@acme.test"})
	generic := rec("id:E-1", "generic", events.Person{ID: "E-1", Email: "b@acme.test"})
	legacy := generic
	legacy.FieldVersions = nil // stored before per-field versions
	legacy.Version.Source = "gusto"
	okta := rec("email:c@acme.test", "okta", events.Person{Email: "c@acme.test"})
	hrEmailOnly := rec("email:d@acme.test", "generic", events.Person{Email: "d@acme.test"})
	for _, c := range []struct {
		name          string
		rec           state.PersonRecord
		owner         string
		hrID, gustoID string
		knownHR       bool
	}{
		{"gusto's old id key", gusto, "gusto", "", "G-1", false},
		{"generic's id key", generic, "hr", "E-1", "", true},
		{"before field versions", legacy, "gusto", "", "E-1", false},
		{"okta only", okta, "", "", "", false},
		{"generic, email only", hrEmailOnly, "", "", "", true},
	} {
		if o := s.Owner(c.rec); o != c.owner {
			t.Errorf("%s: Owner = %q, want %q", c.name, o, c.owner)
		}
		if id := s.IDIn(c.rec, "hr"); id != c.hrID {
			t.Errorf("%s: IDIn(hr) = %q, want %q", c.name, id, c.hrID)
		}
		if id := s.IDIn(c.rec, "gusto"); id != c.gustoID {
			t.Errorf("%s: IDIn(gusto) = %q, want %q", c.name, id, c.gustoID)
		}
		if k := s.Known(c.rec, "hr"); k != c.knownHR {
			t.Errorf("%s: Known(hr) = %v, want %v", c.name, k, c.knownHR)
		}
	}
	// Recorded ids win over inference.
	r, changed := state.Resolution{Space: "hr", ID: "E-9"}.RecordIDs(gusto)
	if !changed || s.IDIn(r, "hr") != "E-9" || !s.Known(r, "hr") || gusto.IDs != nil {
		t.Errorf("RecordIDs: %v, changed %v (original ids %v)", r.IDs, changed, gusto.IDs)
	}
	if _, again := (state.Resolution{Space: "hr", ID: "E-9"}).RecordIDs(r); again {
		t.Error("RecordIDs changed a record that has the id")
	}
}

func TestClampFuture(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	far := time.Date(5138, 1, 1, 0, 0, 0, 0, time.UTC)
	written := now.Add(-time.Hour)
	rec, _ := state.ApplyEvent(state.PersonRecord{}, "id:E-1", events.Person{ID: "E-1", Status: events.Active, Department: "Data"},
		state.Version{OccurredAt: far, Source: "generic", Seq: 1}, "forged")
	rec, _ = state.ApplyEvent(rec, "id:E-1", events.Person{Title: "Eng"}, state.Version{OccurredAt: now.Add(-2 * time.Hour), Source: "generic", Seq: 2}, "ok")
	rec.UpdatedAt = written
	c, clamped := state.ClampFuture(rec, now, 5*time.Minute)
	if !clamped || !c.Version.OccurredAt.Equal(written) || !c.FieldVersions["status"].OccurredAt.Equal(written) {
		t.Fatalf("clamped = %v: version %s, status %s", clamped, c.Version.OccurredAt, c.FieldVersions["status"].OccurredAt)
	}
	if !c.FieldVersions["title"].OccurredAt.Equal(now.Add(-2 * time.Hour)) {
		t.Fatalf("a version within the tolerance moved: %s", c.FieldVersions["title"].OccurredAt)
	}
	if !rec.FieldVersions["status"].OccurredAt.Equal(far) {
		t.Fatal("ClampFuture changed its argument's field versions")
	}
	// A leaver after the write wins over the clamped rehire.
	out, applied := state.ApplyEvent(c, "id:E-1", events.Person{Status: events.Terminated}, state.Version{OccurredAt: now, Source: "gusto", Seq: 9}, "leaver")
	if !applied || out.Person.Status != events.Terminated {
		t.Fatalf("leaver after the clamp: applied %v, %+v", applied, out.Person)
	}
	// Within the tolerance nothing changes.
	if _, clamped := state.ClampFuture(c, now, 5*time.Minute); clamped {
		t.Fatal("clamped twice")
	}
	near, _ := state.ApplyEvent(state.PersonRecord{}, "k", events.Person{Status: events.Active}, state.Version{OccurredAt: now.Add(time.Minute), Source: "okta"}, "e")
	if _, clamped := state.ClampFuture(near, now, 5*time.Minute); clamped {
		t.Fatal("a version within the tolerance was clamped")
	}
}
