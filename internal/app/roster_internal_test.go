package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

const rosterHeader = "id,email,name,status,department,title,groups,manager_email\n"

// rosterWorker is a real worker (embedded NATS, the sandbox) with the
// reconcile routes under ro, and its admin API.
func rosterWorker(t *testing.T, ro ReconcileOptions) (*Worker, http.Handler) {
	t.Helper()
	w, _ := testWorker(t, nil)
	h, _ := adminMux(AdminOptions{Worker: w, Routes: ReconcileRoutes(w, ro), Operators: []Operator{{Name: "alice", Token: aliceToken}}})
	return w, h
}

func postRoster(h http.Handler, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/v1/roster/import", strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+aliceToken)
	return serve(h, r)
}

// TestRosterImportRouteStreamsWithALimit: a roster over JML_ROSTER_MAX_BYTES
// is a 413 and changes nothing; an invalid one is a 400 and changes nothing,
// not even its valid first rows; a valid one is imported.
func TestRosterImportRouteStreamsWithALimit(t *testing.T) {
	w, h := rosterWorker(t, ReconcileOptions{RosterMaxBytes: 1 << 10})
	dir := w.records.Directory
	big := rosterHeader + strings.Repeat("E-1,a@acme.test,A,active,,,,\n", 100)
	if rr := postRoster(h, big); rr.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rr.Body.String(), "JML_ROSTER_MAX_BYTES") {
		t.Fatalf("oversized roster: %d %s", rr.Code, rr.Body)
	}
	bad := rosterHeader + "E-1,a@acme.test,A,active,,,,\nE-2,b@acme.test,B,gone,,,,\n"
	if rr := postRoster(h, bad); rr.Code != http.StatusBadRequest || !strings.Contains(rr.Body.String(), "line 3") {
		t.Fatalf("invalid roster: %d %s", rr.Code, rr.Body)
	}
	if _, err := dir.Get(context.Background(), "id:E-1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("an invalid roster imported its first row: %v", err)
	}
	ok := rosterHeader + "E-1,a@acme.test,A,active,,,,\nE-2,b@acme.test,B,terminated,,,,\n"
	if rr := postRoster(h, ok); rr.Code != http.StatusOK || !strings.Contains(rr.Body.String(), `"rows":2`) {
		t.Fatalf("valid roster: %d %s", rr.Code, rr.Body)
	}
	if rec, err := dir.Get(context.Background(), "id:E-2"); err != nil || rec.Person.Email != "b@acme.test" {
		t.Fatalf("E-2: %+v %v", rec.Person, err)
	}
}

// TestRosterFetchSkipsUnchangedAndRefusesOversized: the scheduled fetch
// imports an export, skips it while its hash is unchanged, imports it again
// when it changes, and refuses one over the limit.
func TestRosterFetchSkipsUnchangedAndRefusesOversized(t *testing.T) {
	var body atomic.Value
	body.Store(rosterHeader + "E-1,a@acme.test,A,active,,,,\n")
	hr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body.Load().(string)) }))
	defer hr.Close()
	w, _ := rosterWorker(t, ReconcileOptions{Roster: RosterFetch{URL: hr.URL}, RosterMaxBytes: 1 << 10})
	s, err := w.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := w.records.Directory
	if err := s.fetchRoster(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := dir.Get(ctx, "id:E-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.fetchRoster(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := dir.Get(ctx, "id:E-1"); again.LastEventID != first.LastEventID || again.Version != first.Version {
		t.Fatalf("an unchanged export was imported again: %+v then %+v", first.Version, again.Version)
	}
	body.Store(rosterHeader + "E-1,a@acme.test,A,terminated,,,,\n")
	if err := s.fetchRoster(ctx); err != nil {
		t.Fatal(err)
	}
	if rec, _ := dir.Get(ctx, "id:E-1"); rec.Person.Status != "terminated" {
		t.Fatalf("changed export not imported: %+v", rec.Person)
	}
	body.Store(rosterHeader + strings.Repeat("E-2,b@acme.test,B,active,,,,\n", 100))
	if err := s.fetchRoster(ctx); !errors.Is(err, errTooLarge) {
		t.Fatalf("oversized export: %v", err)
	}
}
