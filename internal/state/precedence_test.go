package state_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/bamboohr"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/deel"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/generic"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/gusto"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/hibob"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/roster"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

var pt0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

// write is one event applied to the directory.
type write struct {
	id     string
	source string
	at     int // minutes after pt0
	seq    uint64
	p      events.Person
}

func (w write) version() state.Version {
	return state.Version{OccurredAt: pt0.Add(time.Duration(w.at) * time.Minute), Source: w.source, Seq: w.seq}
}

// applyAll folds ws into an empty record in the given order.
func applyAll(t *testing.T, ws ...write) state.PersonRecord {
	t.Helper()
	var rec state.PersonRecord
	for _, w := range ws {
		rec, _ = state.ApplyEvent(rec, "id:E-1", w.p, w.version(), w.id)
	}
	return rec
}

// bothOrders runs check on ws applied in order and in reverse order.
func bothOrders(t *testing.T, ws []write, check func(t *testing.T, rec state.PersonRecord)) {
	t.Helper()
	t.Run("in order", func(t *testing.T) { check(t, applyAll(t, ws...)) })
	rev := make([]write, len(ws))
	for i, w := range ws {
		rev[len(ws)-1-i] = w
	}
	t.Run("reversed", func(t *testing.T) { check(t, applyAll(t, rev...)) })
}

func TestAuthoritativeTable(t *testing.T) {
	hrFields := []string{"id", "email", "name", "department", "title", "manager_email", "attributes.cost_center"}
	cases := []struct {
		source      string
		groups      bool
		status      bool
		otherFields bool
	}{
		{"generic", true, true, true},
		{"roster", true, true, true},
		{"bamboohr", false, true, true},
		{"hibob", false, true, true},
		{"gusto", false, true, true},
		{"personio", false, true, true},
		{"deel", false, true, true},
		{"rippling", false, true, true},
		{"okta", true, true, false},
		{"scim", true, true, false},
		{"entra", true, true, false}, // unknown: an IdP
		{"", true, true, false},
	}
	for _, c := range cases {
		if got := state.Authoritative(c.source, "groups"); got != c.groups {
			t.Errorf("Authoritative(%q, groups) = %v, want %v", c.source, got, c.groups)
		}
		if got := state.Authoritative(c.source, "status"); got != c.status {
			t.Errorf("Authoritative(%q, status) = %v, want %v", c.source, got, c.status)
		}
		for _, f := range hrFields {
			if got := state.Authoritative(c.source, f); got != c.otherFields {
				t.Errorf("Authoritative(%q, %s) = %v, want %v", c.source, f, got, c.otherFields)
			}
		}
	}
}

// TestAuthoritativeSourceNames keeps the classification in step with the
// source names events actually carry.
func TestAuthoritativeSourceNames(t *testing.T) {
	if !state.Authoritative(roster.Source, "groups") || !state.Authoritative(roster.Source, "department") {
		t.Errorf("roster.Source %q is not authoritative for every field", roster.Source)
	}
	if g := (*generic.Source)(nil).Name(); !state.Authoritative(g, "groups") || !state.Authoritative(g, "department") {
		t.Errorf("generic source %q is not authoritative for every field", g)
	}
	for _, s := range []sources.Source{(*bamboohr.Source)(nil), (*hibob.Source)(nil), (*gusto.Source)(nil),
		(*personio.Source)(nil), (*deel.Source)(nil), (*rippling.Source)(nil)} {
		if n := s.Name(); state.Authoritative(n, "groups") || !state.Authoritative(n, "department") {
			t.Errorf("HR source %q is not classified as HR", n)
		}
	}
	if n := (*okta.Source)(nil).Name(); !state.Authoritative(n, "groups") || state.Authoritative(n, "department") {
		t.Errorf("okta source %q is not classified as an IdP", n)
	}
}

func TestOktaDepartmentAfterHRKeepsHR(t *testing.T) {
	hr := write{id: "h1", source: "bamboohr", at: 10, seq: 1, p: events.Person{ID: "E-1", Department: "Payments"}}
	okta := write{id: "o1", source: "okta", at: 20, seq: 2, p: events.Person{ID: "E-1", Department: "Okta Dept", Groups: []string{"eng"}}}
	rec := applyAll(t, hr)
	rec, applied := state.ApplyEvent(rec, "id:E-1", okta.p, okta.version(), okta.id)
	if !applied {
		t.Fatal("okta groups were not applied")
	}
	if rec.Person.Department != "Payments" {
		t.Errorf("department = %q, want the HR value Payments", rec.Person.Department)
	}
	if fv := rec.FieldVersions["department"]; fv.Source != "bamboohr" {
		t.Errorf("department version source = %q, want bamboohr", fv.Source)
	}
	// A write of only the non-authoritative field changes nothing.
	only := write{id: "o2", source: "okta", at: 30, seq: 3, p: events.Person{ID: "E-1", Department: "Later"}}
	if got, applied := state.ApplyEvent(rec, "id:E-1", only.p, only.version(), only.id); applied || got.Person.Department != "Payments" {
		t.Errorf("okta-only department write: applied=%v department=%q", applied, got.Person.Department)
	}
}

func TestHRDepartmentOlderArrivingLaterWins(t *testing.T) {
	okta := write{id: "o1", source: "okta", at: 20, seq: 1, p: events.Person{ID: "E-1", Department: "Okta Dept"}}
	hr := write{id: "h1", source: "hibob", at: 10, seq: 2, p: events.Person{ID: "E-1", Department: "Payments"}}
	rec := applyAll(t, okta)
	if rec.Person.Department != "Okta Dept" {
		t.Fatalf("department = %q, want Okta Dept before any HR write", rec.Person.Department)
	}
	rec, applied := state.ApplyEvent(rec, "id:E-1", hr.p, hr.version(), hr.id)
	if !applied || rec.Person.Department != "Payments" {
		t.Fatalf("older HR department: applied=%v department=%q, want Payments", applied, rec.Person.Department)
	}
	// The record's version stays at the newest applied write.
	if rec.LastEventID != "o1" || !rec.Version.OccurredAt.Equal(okta.version().OccurredAt) {
		t.Errorf("record version = %+v %q, want the okta write's", rec.Version, rec.LastEventID)
	}
}

func TestOktaOnlyPersonGetsDepartment(t *testing.T) {
	o1 := write{id: "o1", source: "okta", at: 10, seq: 1, p: events.Person{ID: "E-1", Email: "a@acme.test", Department: "Data"}}
	o2 := write{id: "o2", source: "okta", at: 20, seq: 2, p: events.Person{ID: "E-1", Department: "Risk"}}
	bothOrders(t, []write{o1, o2}, func(t *testing.T, rec state.PersonRecord) {
		if rec.Person.Department != "Risk" || rec.Person.Email != "a@acme.test" {
			t.Errorf("person = %+v, want the newest okta department Risk and the email", rec.Person)
		}
	})
}

func TestGroupsIdPBeatsHR(t *testing.T) {
	for _, hrAt := range []int{5, 30} { // HR older, then newer than Okta
		t.Run(fmt.Sprint("hr at ", hrAt), func(t *testing.T) {
			hr := write{id: "h1", source: "personio", at: hrAt, seq: 1, p: events.Person{ID: "E-1", Groups: []string{"hr-group"}}}
			okta := write{id: "o1", source: "okta", at: 20, seq: 2, p: events.Person{ID: "E-1", Groups: []string{"leads"}}}
			bothOrders(t, []write{hr, okta}, func(t *testing.T, rec state.PersonRecord) {
				if !reflect.DeepEqual(rec.Person.Groups, []string{"leads"}) {
					t.Errorf("groups = %v, want the okta groups [leads]", rec.Person.Groups)
				}
			})
		})
	}
	// Without an IdP, HR groups still fill the field.
	hr := write{id: "h1", source: "deel", at: 5, seq: 1, p: events.Person{ID: "E-1", Groups: []string{"hr-group"}}}
	if rec := applyAll(t, hr); !reflect.DeepEqual(rec.Person.Groups, []string{"hr-group"}) {
		t.Errorf("HR-only groups = %v, want [hr-group]", rec.Person.Groups)
	}
}

func TestIdPDeactivateAfterHRActive(t *testing.T) {
	for _, c := range []struct {
		source string
		status events.Status
	}{{"okta", events.Suspended}, {"scim", events.Terminated}, {"entra", events.Suspended}} {
		t.Run(c.source, func(t *testing.T) {
			hr := write{id: "h1", source: "hibob", at: 10, seq: 1, p: events.Person{ID: "E-1", Status: events.Active, Department: "Payments"}}
			idp := write{id: "i1", source: c.source, at: 20, seq: 2, p: events.Person{ID: "E-1", Status: c.status}}
			bothOrders(t, []write{hr, idp}, func(t *testing.T, rec state.PersonRecord) {
				if rec.Person.Status != c.status || rec.Person.Department != "Payments" {
					t.Errorf("person = %+v, want status %s and the HR department", rec.Person, c.status)
				}
			})
		})
	}
}

func TestHRActiveNewerThanIdPDeactivate(t *testing.T) {
	idp := write{id: "o1", source: "okta", at: 10, seq: 1, p: events.Person{ID: "E-1", Status: events.Suspended}}
	hr := write{id: "h1", source: "rippling", at: 20, seq: 2, p: events.Person{ID: "E-1", Status: events.Active}}
	bothOrders(t, []write{idp, hr}, func(t *testing.T, rec state.PersonRecord) {
		if rec.Person.Status != events.Active {
			t.Errorf("status = %s, want active (the newer HR record)", rec.Person.Status)
		}
	})
}

func TestStatusTiesAcrossSourcesTerminatedWins(t *testing.T) {
	// "okta" < "rippling": without the terminated rule the name order would
	// pick the active write.
	hr := write{id: "h1", source: "rippling", at: 10, seq: 5, p: events.Person{ID: "E-1", Status: events.Active}}
	idp := write{id: "o1", source: "okta", at: 10, seq: 1, p: events.Person{ID: "E-1", Status: events.Terminated}}
	bothOrders(t, []write{hr, idp}, func(t *testing.T, rec state.PersonRecord) {
		if rec.Person.Status != events.Terminated {
			t.Errorf("status = %s, want terminated at equal times", rec.Person.Status)
		}
	})
}

func TestAllFieldSourcesOverrideByTime(t *testing.T) {
	for _, src := range []string{"generic", roster.Source} {
		all := write{id: "a1", source: src, at: 20, seq: 3, p: events.Person{ID: "E-1", Department: "Gen Dept", Groups: []string{"gen"}, Status: events.Active}}
		t.Run(src+"/newer than HR and IdP wins", func(t *testing.T) {
			hr := write{id: "h1", source: "gusto", at: 10, seq: 1, p: events.Person{ID: "E-1", Department: "HR Dept", Status: events.Active}}
			okta := write{id: "o1", source: "okta", at: 10, seq: 2, p: events.Person{ID: "E-1", Groups: []string{"okta"}, Status: events.Suspended}}
			bothOrders(t, []write{hr, okta, all}, func(t *testing.T, rec state.PersonRecord) {
				if rec.Person.Department != "Gen Dept" || !reflect.DeepEqual(rec.Person.Groups, []string{"gen"}) || rec.Person.Status != events.Active {
					t.Errorf("person = %+v, want the newer %s values", rec.Person, src)
				}
			})
		})
		t.Run(src+"/older than HR and IdP loses", func(t *testing.T) {
			// Same tier: HR for the department, Okta for groups.
			hr := write{id: "h2", source: "gusto", at: 30, seq: 4, p: events.Person{ID: "E-1", Department: "HR Dept 2"}}
			okta := write{id: "o2", source: "okta", at: 30, seq: 5, p: events.Person{ID: "E-1", Groups: []string{"okta2"}}}
			bothOrders(t, []write{all, hr, okta}, func(t *testing.T, rec state.PersonRecord) {
				if rec.Person.Department != "HR Dept 2" || !reflect.DeepEqual(rec.Person.Groups, []string{"okta2"}) {
					t.Errorf("person = %+v, want the newer HR department and okta groups", rec.Person)
				}
			})
		})
		t.Run(src+"/older than a non-authoritative write wins", func(t *testing.T) {
			okta := write{id: "o3", source: "okta", at: 40, seq: 6, p: events.Person{ID: "E-1", Department: "Okta Dept"}}
			bothOrders(t, []write{all, okta}, func(t *testing.T, rec state.PersonRecord) {
				if rec.Person.Department != "Gen Dept" {
					t.Errorf("department = %q, want the %s value over a newer okta one", rec.Person.Department, src)
				}
			})
		})
	}
}

func TestLegacyRecordPrecedence(t *testing.T) {
	legacy := state.PersonRecord{Key: "id:E-1", LastEventID: "old",
		Version: state.Version{OccurredAt: pt0.Add(50 * time.Minute), Source: "bamboohr", Seq: 9},
		Person:  events.Person{ID: "E-1", Email: "a@acme.test", Status: events.Active, Department: "Payments"}}
	apply := func(rec state.PersonRecord, w write) (state.PersonRecord, bool) {
		return state.ApplyEvent(rec, "id:E-1", w.p, w.version(), w.id)
	}
	// A newer Okta department does not beat the legacy HR department.
	if rec, applied := apply(legacy, write{id: "o1", source: "okta", at: 60, seq: 10, p: events.Person{Department: "Okta"}}); applied || rec.Person.Department != "Payments" {
		t.Errorf("okta over legacy HR department: applied=%v department=%q", applied, rec.Person.Department)
	}
	// An older write fills a field the legacy record has no value for.
	rec, applied := apply(legacy, write{id: "g1", source: "generic", at: 10, seq: 1, p: events.Person{Title: "Engineer"}})
	if !applied || rec.Person.Title != "Engineer" {
		t.Fatalf("older title into legacy record: applied=%v title=%q", applied, rec.Person.Title)
	}
	if rec.LastEventID != "old" {
		t.Errorf("LastEventID = %q, an older write must not take the record version", rec.LastEventID)
	}
	// After that first write the legacy values keep their version: an older
	// HR department still loses, a newer one wins.
	if got, applied := apply(rec, write{id: "h1", source: "hibob", at: 20, seq: 2, p: events.Person{Department: "Old"}}); applied || got.Person.Department != "Payments" {
		t.Errorf("older HR department after migration: applied=%v department=%q", applied, got.Person.Department)
	}
	if got, applied := apply(rec, write{id: "h2", source: "hibob", at: 70, seq: 3, p: events.Person{Department: "New"}}); !applied || got.Person.Department != "New" || got.LastEventID != "h2" {
		t.Errorf("newer HR department after migration: applied=%v department=%q last=%q", applied, got.Person.Department, got.LastEventID)
	}
}

func TestRecordVersionIsNewestAppliedWrite(t *testing.T) {
	hr := write{id: "h1", source: "bamboohr", at: 10, seq: 1, p: events.Person{ID: "E-1", Department: "Payments"}}
	rec := applyAll(t, hr)
	// Rejected (non-authoritative): the record version does not move.
	okta := write{id: "o1", source: "okta", at: 20, seq: 2, p: events.Person{Department: "X"}}
	if got, applied := state.ApplyEvent(rec, "id:E-1", okta.p, okta.version(), okta.id); applied || got.LastEventID != "h1" {
		t.Errorf("rejected write: applied=%v last=%q", applied, got.LastEventID)
	}
	// Applied and newest: it becomes the record version.
	groups := write{id: "o2", source: "okta", at: 30, seq: 3, p: events.Person{Groups: []string{"eng"}}}
	rec, _ = state.ApplyEvent(rec, "id:E-1", groups.p, groups.version(), groups.id)
	if rec.LastEventID != "o2" || rec.Version != groups.version() {
		t.Errorf("record version = %+v %q, want the okta groups write", rec.Version, rec.LastEventID)
	}
	// Applied but older: the record version stays.
	title := write{id: "h2", source: "bamboohr", at: 5, seq: 4, p: events.Person{Title: "Engineer"}}
	rec, applied := state.ApplyEvent(rec, "id:E-1", title.p, title.version(), title.id)
	if !applied || rec.Person.Title != "Engineer" || rec.LastEventID != "o2" {
		t.Errorf("older applied write: applied=%v title=%q last=%q", applied, rec.Person.Title, rec.LastEventID)
	}
}

// mixedHistory is one person's history from every class of source, with
// conflicting writes to each field, ties at equal times and a replay.
var mixedHistory = []write{
	{id: "h1", source: "bamboohr", at: 10, seq: 1, p: events.Person{ID: "E-1", Email: "jane@acme.test", Status: events.Active, Department: "Payments", Title: "Engineer", Attributes: map[string]string{"cost_center": "100"}}},
	{id: "o1", source: "okta", at: 15, seq: 2, p: events.Person{Email: "jane.doe@acme.test", Name: "Jane (Okta)", Department: "Okta Payments", Groups: []string{"eng"}, Attributes: map[string]string{"okta_id": "00u1", "cost_center": "999"}}},
	{id: "h2", source: "bamboohr", at: 20, seq: 3, p: events.Person{ID: "E-1", Department: "Data", Groups: []string{"hr-group"}}},
	{id: "o2", source: "okta", at: 25, seq: 4, p: events.Person{Groups: []string{"eng", "leads"}, Title: "Okta Title"}},
	{id: "s1", source: "scim", at: 30, seq: 5, p: events.Person{Status: events.Suspended, ManagerEmail: "boss@acme.test"}},
	{id: "h3", source: "hibob", at: 30, seq: 6, p: events.Person{ID: "E-1", Status: events.Active, Name: "Jane Doe"}},
	{id: "g1", source: "generic", at: 5, seq: 7, p: events.Person{ID: "E-1", Title: "Generic Title", ManagerEmail: "lead@acme.test"}},
	{id: "o3", source: "okta", at: 40, seq: 8, p: events.Person{Status: events.Terminated}},
	{id: "h4", source: "rippling", at: 40, seq: 9, p: events.Person{ID: "E-1", Status: events.Active, Department: "Risk"}},
	{id: "r1", source: "roster", at: 35, seq: 10, p: events.Person{ID: "E-1", Groups: []string{"roster-group"}, Attributes: map[string]string{"cost_center": "200"}}},
	{id: "h2", source: "bamboohr", at: 20, seq: 3, p: events.Person{ID: "E-1", Department: "Data", Groups: []string{"hr-group"}}}, // replay
}

func TestPrecedencePermutationsAgree(t *testing.T) {
	want := applyAll(t, mixedHistory...)
	// The expected outcome, field by field.
	wantPerson := events.Person{
		ID:           "E-1",
		Email:        "jane@acme.test",                                           // HR beats a newer Okta email
		Name:         "Jane Doe",                                                 // HR beats an older Okta name
		Status:       events.Terminated,                                          // t40 tie between okta and HR: terminated wins
		Department:   "Risk",                                                     // newest HR; Okta never counts
		Title:        "Engineer",                                                 // HR t10 beats generic t5 and Okta t25
		ManagerEmail: "lead@acme.test",                                           // generic (authoritative) beats a newer SCIM value
		Groups:       []string{"roster-group"},                                   // roster t35 beats Okta t25; HR never counts
		Attributes:   map[string]string{"cost_center": "200", "okta_id": "00u1"}, // roster t35 > HR t10 > Okta
	}
	if !reflect.DeepEqual(want.Person, wantPerson) {
		t.Fatalf("in-order result\n got %+v\nwant %+v", want.Person, wantPerson)
	}
	r := rand.New(rand.NewPCG(20261128, 7))
	for i := range 500 {
		perm := append([]write(nil), mixedHistory...)
		r.Shuffle(len(perm), func(a, b int) { perm[a], perm[b] = perm[b], perm[a] })
		got := applyAll(t, perm...)
		if !reflect.DeepEqual(got.Person, want.Person) || !reflect.DeepEqual(got.FieldVersions, want.FieldVersions) {
			order := make([]string, len(perm))
			for j, w := range perm {
				order[j] = w.id
			}
			t.Fatalf("permutation %d %v\n got %+v %v\nwant %+v %v", i, order, got.Person, got.FieldVersions, want.Person, want.FieldVersions)
		}
		// Applying any event again changes nothing.
		w := perm[r.IntN(len(perm))]
		if _, applied := state.ApplyEvent(got, "id:E-1", w.p, w.version(), w.id); applied {
			t.Fatalf("permutation %d: replaying %s reported a change", i, w.id)
		}
	}
}
