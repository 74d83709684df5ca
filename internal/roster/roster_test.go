package roster_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/roster"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

const header = "id,email,name,status,department,title,groups,manager_email\n"

func TestParseCSV(t *testing.T) {
	rows, err := roster.Parse("r.csv", strings.NewReader(header+
		"E-1,jane@acme.test,Jane Doe,active,Payments,Engineer,backend-eng;eng-managers,lead@acme.test\n"+
		"E-2,bob@acme.test,Bob,Terminated,,,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Line != 2 || rows[1].Line != 3 {
		t.Fatalf("rows = %+v", rows)
	}
	p := rows[0].Person
	if p.ID != "E-1" || p.Status != events.Active || len(p.Groups) != 2 || p.Groups[1] != "eng-managers" || p.ManagerEmail != "lead@acme.test" {
		t.Fatalf("person = %+v", p)
	}
	if rows[1].Person.Status != events.Terminated || rows[1].Person.Groups == nil || len(rows[1].Person.Groups) != 0 {
		t.Fatalf("person 2 = %+v", rows[1].Person)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"BadHeader", "id,email\n", "line 1"},
		{"MissingStatus", header + "E-1,a@acme.test,A,,,,,\n", "line 2: status: required"},
		{"BadStatus", header + "E-1,a@acme.test,A,gone,,,,\n", "line 2: status"},
		{"BadEmail", header + "E-1,not-an-email,A,active,,,,\n", "line 2: email"},
		{"NoIdentity", header + ",,A,active,,,,\n", "line 2: a person needs an id or an email"},
		{"DuplicateEmail", header + "E-1,a@acme.test,A,active,,,,\nE-2,A@acme.test,A,active,,,,\n", "line 3: email: A@acme.test already appears on an earlier line"},
		{"FieldCount", header + "E-1,a@acme.test,active\n", "line 2: want 8 fields"},
		{"JSONUnknownField", "[\n {\"id\":\"E-1\",\"email\":\"a@acme.test\",\"status\":\"active\"},\n {\"id\":\"E-2\",\"nope\":1}\n]", "line 3"},
		{"JSONBadStatus", "[\n{\"id\":\"E-1\",\"status\":\"x\"}]", "line 2: status"},
		{"JSONTrailing", "[]\n[]", "data after the array"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := roster.Parse("r", strings.NewReader(tc.body))
			if !errors.Is(err, roster.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestParseJSON(t *testing.T) {
	rows, err := roster.Parse("r.json", strings.NewReader(`[
  {"id": "E-1", "email": "jane@acme.test", "status": "active", "groups": ["a"]},
  {"email": "bob@acme.test", "status": "suspended"}
]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Line != 2 || rows[1].Line != 3 || rows[1].Person.Status != events.Suspended {
		t.Fatalf("rows = %+v", rows)
	}
}

// FuzzParse: the parser never panics, and whatever it accepts is valid and
// round-trips through the JSON form (the oracle).
func FuzzParse(f *testing.F) {
	f.Add(header + "E-1,jane@acme.test,Jane,active,Payments,Eng,a;b,lead@acme.test\n")
	f.Add(`[{"id":"E-1","email":"a@acme.test","status":"active"}]`)
	f.Add(header + "\"E-1\",\"a@acme.test\",\"x,y\",active,,,,\n")
	f.Fuzz(func(t *testing.T, s string) {
		rows, err := roster.Parse("fuzz", strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, roster.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		var b strings.Builder
		b.WriteString("[")
		for i, r := range rows {
			if r.Person.ID == "" && r.Person.Email == "" || !r.Person.Status.Valid() {
				t.Fatalf("accepted invalid row %+v", r)
			}
			if i > 0 {
				b.WriteString(",\n")
			}
			j, _ := jsonMarshal(r.Person)
			b.Write(j)
		}
		b.WriteString("]")
		again, err := roster.Parse("again", strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-parse of accepted rows: %v\n%s", err, b.String())
		}
		if len(again) != len(rows) {
			t.Fatalf("re-parse: %d rows, want %d", len(again), len(rows))
		}
	})
}

func TestImportOlderRowsIgnoredAndFullTerminates(t *testing.T) {
	ctx := context.Background()
	dir := openDirectory(t)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rows, err := roster.Parse("r", strings.NewReader(header+"E-1,jane@acme.test,Jane,active,Payments,,,\nE-2,bob@acme.test,Bob,active,,,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := roster.Import(ctx, dir, rows, roster.ImportOptions{AsOf: t0})
	if err != nil || res.Applied != 2 {
		t.Fatalf("import = %+v, %v", res, err)
	}
	// An older roster changes nothing.
	old, _ := roster.Parse("r", strings.NewReader(header+"E-1,jane@acme.test,Jane,terminated,,,,\n"))
	res, err = roster.Import(ctx, dir, old, roster.ImportOptions{AsOf: t0.Add(-time.Hour)})
	if err != nil || res.Unchanged != 1 || res.Applied != 0 {
		t.Fatalf("older import = %+v, %v", res, err)
	}
	rec, err := dir.Get(ctx, "id:E-1")
	if err != nil || rec.Person.Status != events.Active {
		t.Fatalf("E-1 = %+v, %v", rec, err)
	}
	// --full: bob is absent from the newer file, so he is terminated.
	newer, _ := roster.Parse("r", strings.NewReader(header+"E-1,jane@acme.test,Jane,active,Payments,,,\n"))
	res, err = roster.Import(ctx, dir, newer, roster.ImportOptions{AsOf: t0.Add(time.Hour), Full: true})
	if err != nil || res.Terminated != 1 {
		t.Fatalf("full import = %+v, %v", res, err)
	}
	rec, err = dir.Get(ctx, "id:E-2")
	if err != nil || rec.Person.Status != events.Terminated {
		t.Fatalf("E-2 = %+v, %v", rec, err)
	}
}

// A roster row is about the person the directory already knows by the link
// table: someone first seen by an identity provider (keyed by email) and an
// HR-keyed person listed without an id are updated, not duplicated; a
// recycled address (same email, another HR id) is a new person.
func TestImportFindsPeopleThroughTheLinkTable(t *testing.T) {
	ctx := context.Background()
	dir := openDirectory(t)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	seed := func(key string, p events.Person) {
		t.Helper()
		if _, _, err := dir.Apply(ctx, key, p, state.Version{OccurredAt: t0, Source: "okta", Seq: 1}, "seed"); err != nil {
			t.Fatal(err)
		}
		if err := dir.Link(ctx, "email", strings.ToLower(p.Email), key); err != nil {
			t.Fatal(err)
		}
	}
	seed("email:ann@acme.test", events.Person{Email: "ann@acme.test", Status: events.Active, Groups: []string{"eng"}})
	seed("id:E-7", events.Person{ID: "E-7", Email: "bob@acme.test", Status: events.Active})
	seed("id:E-9", events.Person{ID: "E-9", Email: "old@acme.test", Status: events.Terminated})

	rows, err := roster.Parse("r", strings.NewReader(header+
		"E-1,Ann@acme.test,Ann,active,Payments,,,\n"+ // IdP-first Ann, now with her HR id
		",bob@acme.test,Bob,active,Platform,,,\n"+ // HR-keyed Bob, listed without an id
		"E-10,old@acme.test,New Hire,active,Data,,,\n")) // recycled address
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roster.Import(ctx, dir, rows, roster.ImportOptions{AsOf: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for rec, err := range dir.List(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, rec.Key)
	}
	slices.Sort(keys)
	if want := []string{"email:ann@acme.test", "id:E-10", "id:E-7", "id:E-9"}; !slices.Equal(keys, want) {
		t.Fatalf("directory keys = %v, want %v", keys, want)
	}
	ann, err := dir.Get(ctx, "email:ann@acme.test")
	if err != nil || ann.Person.ID != "E-1" || ann.Person.Department != "Payments" {
		t.Fatalf("Ann = %+v, %v; want her HR id and department on the existing record", ann.Person, err)
	}
	if k, err := dir.Resolve(ctx, state.SharedIDSpace, "E-1"); err != nil || k != "email:ann@acme.test" {
		t.Fatalf("roster link of E-1 = %q, %v", k, err)
	}
	if bob, err := dir.Get(ctx, "id:E-7"); err != nil || bob.Person.Department != "Platform" {
		t.Fatalf("Bob = %+v, %v", bob.Person, err)
	}
	if k, err := dir.Resolve(ctx, "email", "bob@acme.test"); err != nil || k != "id:E-7" {
		t.Fatalf("Bob's email link = %q, %v; want it left on id:E-7", k, err)
	}
	if k, err := dir.Resolve(ctx, "email", "old@acme.test"); err != nil || k != "id:E-10" {
		t.Fatalf("the recycled address links to %q, %v; want the new hire", k, err)
	}
	if old, err := dir.Get(ctx, "id:E-9"); err != nil || old.Person.Status != events.Terminated || old.Person.Name != "" {
		t.Fatalf("the leaver's record changed: %+v, %v", old.Person, err)
	}
}

// openDirectory opens a directory on a fresh embedded NATS server.
func openDirectory(t *testing.T) *jsstate.Directory {
	t.Helper()
	_, _, js := natstest.Run(t)
	recs, err := jsstate.Open(context.Background(), js, jsstate.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	return recs.Directory
}

// TestRosterLimitsAndFutureAsOf: a row's id over the limit is refused, and so
// is a roster dated ahead of the clock (it would outrank every later event).
func TestRosterLimitsAndFutureAsOf(t *testing.T) {
	csv := "id,email,name,status,department,title,groups,manager_email\n" + strings.Repeat("9", 257) + ",a@acme.test,A,active,,,,\n"
	if _, err := roster.Parse("r", strings.NewReader(csv)); !errors.Is(err, roster.ErrInvalid) || !strings.Contains(err.Error(), "longer than 256") {
		t.Fatalf("long id: %v", err)
	}
	ok := "id,email,name,status,department,title,groups,manager_email\n" + strings.Repeat("9", 256) + ",a@acme.test,A,active,,,,\n"
	rows, err := roster.Parse("r", strings.NewReader(ok))
	if err != nil {
		t.Fatalf("largest allowed id: %v", err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = roster.Import(context.Background(), nil, rows, roster.ImportOptions{AsOf: now.Add(6 * time.Minute), Now: func() time.Time { return now }})
	if !errors.Is(err, roster.ErrInvalid) {
		t.Fatalf("future as-of: %v", err)
	}
}

// roster import --full terminates only people linked to the roster's id
// space: a person known only from Okta, one from Gusto (keyed the new way or
// the old way) are not the roster's to terminate; a generic person absent
// from the roster is, and so is a person a declared source shares the space
// with.
func TestFullTerminatesOnlyTheRostersIDSpace(t *testing.T) {
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	run := func(t *testing.T, spaces state.IDSpaces) map[string]events.Status {
		t.Helper()
		dir := openDirectory(t)
		seed := func(key, src string, p events.Person) {
			t.Helper()
			if _, _, err := dir.Apply(ctx, key, p, state.Version{OccurredAt: t0, Source: src, Seq: 1}, "seed"); err != nil {
				t.Fatal(err)
			}
		}
		seed("email:okta.only@acme.test", "okta", events.Person{Email: "okta.only@acme.test", Status: events.Active, Attributes: map[string]string{"okta_id": "00u1"}})
		seed("gusto:G-1", "gusto", events.Person{ID: "G-1", Email: "gusto.new@acme.test", Status: events.Active})
		seed("id:G-2", "gusto", events.Person{ID: "G-2", Email: "gusto.old@acme.test", Status: events.Active}) // keyed the old way
		seed("bamboohr:B-1", "bamboohr", events.Person{ID: "B-1", Email: "bamboo@acme.test", Status: events.Active})
		seed("id:E-1", "generic", events.Person{ID: "E-1", Email: "kept@acme.test", Status: events.Active})
		seed("id:E-2", "generic", events.Person{ID: "E-2", Email: "gone@acme.test", Status: events.Active})
		seed("email:generic.only@acme.test", "generic", events.Person{Email: "generic.only@acme.test", Status: events.Active})
		rows, err := roster.Parse("r", strings.NewReader(header+"E-1,kept@acme.test,Kept,active,,,,\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := roster.Import(ctx, dir, rows, roster.ImportOptions{AsOf: t0.Add(time.Minute), Full: true, IDSpaces: spaces}); err != nil {
			t.Fatal(err)
		}
		out := map[string]events.Status{}
		for rec, err := range dir.List(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			out[rec.Key] = rec.Person.Status
		}
		return out
	}
	got := run(t, state.IDSpaces{})
	want := map[string]events.Status{
		"email:okta.only@acme.test": events.Active, "gusto:G-1": events.Active, "id:G-2": events.Active, "bamboohr:B-1": events.Active,
		"id:E-1": events.Active, "id:E-2": events.Terminated, "email:generic.only@acme.test": events.Terminated,
	}
	if !maps.Equal(got, want) {
		t.Fatalf("after --full:\n got %v\nwant %v", got, want)
	}
	spaces, err := state.NewIDSpaces([]string{"generic", "roster", "bamboohr"})
	if err != nil {
		t.Fatal(err)
	}
	want["bamboohr:B-1"] = events.Terminated
	if got := run(t, spaces); !maps.Equal(got, want) {
		t.Fatalf("after --full with bamboohr sharing the space:\n got %v\nwant %v", got, want)
	}
}
