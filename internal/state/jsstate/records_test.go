package jsstate_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// openRecords starts a server and opens every record store on it. It returns
// a function opening the stores again on a fresh TCP connection, as another
// replica would.
func openRecords(t *testing.T, o jsstate.Options) (*jsstate.Records, jetstream.JetStream, func(t *testing.T) *jsstate.Records) {
	t.Helper()
	srv, _, js := natstest.Run(t)
	r, err := jsstate.Open(t.Context(), js, o)
	if err != nil {
		t.Fatal(err)
	}
	replica := func(t *testing.T) *jsstate.Records {
		t.Helper()
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js2, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := jsstate.Open(t.Context(), js2, o)
		if err != nil {
			t.Fatal(err)
		}
		return r2
	}
	return r, js, replica
}

func collect[T any](t *testing.T, seq iter.Seq2[T, error]) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestOpenIsIdempotentAndNamesAssets(t *testing.T) {
	ctx := t.Context()
	_, js, _ := openRecords(t, jsstate.Options{})
	if _, err := jsstate.Open(ctx, js, jsstate.Options{}); err != nil {
		t.Fatalf("second Open: %v", err)
	}
	for _, b := range []string{jsstate.BucketDirectory, jsstate.BucketLinks, jsstate.BucketSnapshots, jsstate.BucketDue, jsstate.BucketRuns} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
	st, err := js.Stream(ctx, jsstate.StreamEvidence)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("evidence stream must be file storage without deletes or purges: %+v", cfg)
	}
}

func TestLinkTable(t *testing.T) {
	ctx := t.Context()
	r, _, replica := openRecords(t, jsstate.Options{})
	d := r.Directory
	if _, err := d.Resolve(ctx, "okta", "00u1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("unlinked: %v", err)
	}
	// Source ids may hold characters that are not valid in KV keys.
	if err := d.Link(ctx, "okta", "00u1/ä b.c*", "id:E-1"); err != nil {
		t.Fatal(err)
	}
	if err := d.Link(ctx, "bamboohr", "00u1/ä b.c*", "id:E-2"); err != nil {
		t.Fatal(err)
	}
	other := replica(t).Directory
	if got, err := other.Resolve(ctx, "okta", "00u1/ä b.c*"); err != nil || got != "id:E-1" {
		t.Fatalf("Resolve okta = %q, %v", got, err)
	}
	if got, err := other.Resolve(ctx, "bamboohr", "00u1/ä b.c*"); err != nil || got != "id:E-2" {
		t.Fatalf("Resolve bamboohr = %q, %v; sources must not share ids", got, err)
	}
	if err := other.Link(ctx, "okta", "00u1/ä b.c*", "id:E-3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Resolve(ctx, "okta", "00u1/ä b.c*"); got != "id:E-3" {
		t.Fatalf("relink: %q", got)
	}
	if err := d.Link(ctx, "", "x", "id:E-1"); err == nil {
		t.Fatal("empty source accepted")
	}
}

// TestDirectoryListStreams lists 20,000 records of about 1.5 KiB and checks
// that the listing streams: halfway through, the server has delivered only a
// little more than was consumed, and the heap (which includes the in-process
// server's block cache) never grows by more than half the data.
func TestDirectoryListStreams(t *testing.T) {
	ctx := t.Context()
	r, js, _ := openRecords(t, jsstate.Options{})
	const n = 20000
	pad := strings.Repeat("x", 1500)
	// Seed through raw publishes (fast); a few through Apply to mix both paths.
	for i := range n {
		key := "id:E-" + strconv.Itoa(i)
		rec := state.PersonRecord{Key: key, Person: events.Person{ID: "E-" + strconv.Itoa(i), Email: fmt.Sprintf("p%d@acme.com", i),
			Status: events.Active, Title: pad}, Version: state.Version{OccurredAt: t0, Source: "roster", Seq: uint64(i)}}
		if i%1000 == 0 {
			if _, _, err := r.Directory.Apply(ctx, key, rec.Person, rec.Version, "e"); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, _ := json.Marshal(rec)
		if _, err := js.PublishAsync("$KV."+jsstate.BucketDirectory+"."+b64(key), b); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("seeding timed out")
	}
	// Update one record: List must show only its latest revision.
	if _, err := r.Directory.Update(ctx, "id:E-7", func(p state.PersonRecord) (state.PersonRecord, error) {
		p.Person.Department = "Risk"
		return p, nil
	}); err != nil {
		t.Fatal(err)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	seen := make([]bool, n)
	count := 0
	for rec, err := range r.Directory.List(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(rec.Key, "id:E-"))
		if err != nil || i < 0 || i >= n {
			t.Fatalf("unexpected key %q", rec.Key)
		}
		if seen[i] {
			t.Fatalf("%s listed twice", rec.Key)
		}
		seen[i] = true
		if i == 7 && rec.Person.Department != "Risk" {
			t.Fatalf("old revision of %s listed: %+v", rec.Key, rec.Person)
		}
		count++
		if count == n/2 {
			// Halfway: the server must not have delivered much more than
			// what was consumed (a few pull batches at most).
			delivered := listingDelivered(t, js)
			t.Logf("consumed %d, server delivered %d", count, delivered)
			if delivered > uint64(count)+2000 {
				t.Fatalf("server delivered %d records while %d were consumed: List reads ahead without bound", delivered, count)
			}
		}
		if count%2000 == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	if count != n {
		t.Fatalf("listed %d of %d records", count, n)
	}
	grew := int64(peak) - int64(base)
	t.Logf("listed %d records (~%d MiB of JSON); heap grew by at most %d KiB", n, n*1600>>20, grew>>10)
	if grew > 15<<20 {
		t.Fatalf("heap grew by %d MiB while listing: List holds records in memory", grew>>20)
	}

	// Stopping early removes the listing consumer.
	k := 0
	for _, err := range r.Directory.List(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if k++; k == 10 {
			break
		}
	}
	st, err := js.Stream(ctx, "KV_"+jsstate.BucketDirectory)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers left on the directory stream after listing", info.State.Consumers)
	}
}

// listingDelivered returns how far the (only) consumer on the directory
// stream, the one List created, has been delivered.
func listingDelivered(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(t.Context(), "KV_"+jsstate.BucketDirectory)
	if err != nil {
		t.Fatal(err)
	}
	var infos []*jetstream.ConsumerInfo
	l := st.ListConsumers(t.Context())
	for ci := range l.Info() {
		infos = append(infos, ci)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 {
		t.Fatalf("%d consumers on the directory stream during List, want 1", len(infos))
	}
	return infos[0].Delivered.Consumer
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestDirectoryListEmpty(t *testing.T) {
	r, _, _ := openRecords(t, jsstate.Options{})
	if got := collect(t, r.Directory.List(t.Context())); len(got) != 0 {
		t.Fatalf("empty directory listed %d records", len(got))
	}
}

func TestSnapshots(t *testing.T) {
	ctx := t.Context()
	r, _, _ := openRecords(t, jsstate.Options{})
	s := r.Snapshots
	if _, err := s.Latest(ctx, "id:E-1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("Latest of nobody: %v", err)
	}
	if got, err := s.List(ctx, "id:E-1"); err != nil || len(got) != 0 {
		t.Fatalf("List of nobody: %v, %v", got, err)
	}
	for i := range 3 {
		err := s.Put(ctx, state.Snapshot{PersonKey: "id:E-1", Email: "jane@acme.com", MemberID: "m1", UserID: "u1",
			OrgRole: []string{"member", "manager", "admin"}[i], Teams: []state.TeamAccess{{Slug: "payments", Role: "contributor"}},
			TakenAt: t0.Add(time.Duration(i) * time.Hour), EventID: "e" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, state.Snapshot{PersonKey: "id:E-2", OrgRole: "member", Pending: true}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Latest(ctx, "id:E-1")
	if err != nil || got.OrgRole != "admin" || got.EventID != "e2" || got.UserID != "u1" || len(got.Teams) != 1 || got.Teams[0].Role != "contributor" {
		t.Fatalf("Latest = %+v, %v", got, err)
	}
	all, err := s.List(ctx, "id:E-1")
	if err != nil || len(all) != 3 || all[0].EventID != "e0" || all[2].EventID != "e2" {
		t.Fatalf("List = %+v, %v", all, err)
	}
	if p, err := s.Latest(ctx, "id:E-2"); err != nil || !p.Pending || p.TakenAt.IsZero() {
		t.Fatalf("pending snapshot = %+v, %v", p, err)
	}
	if err := s.Put(ctx, state.Snapshot{}); err == nil {
		t.Fatal("snapshot without person key accepted")
	}
}

func appendN(t *testing.T, l *jsstate.EvidenceLog, n int, people []string) []state.Evidence {
	t.Helper()
	var out []state.Evidence
	for i := range n {
		p := people[i%len(people)]
		e, err := l.Append(t.Context(), state.Evidence{PersonKey: p, Email: p + "@acme.com", Kind: state.EvidenceConvergence,
			EventIDs: []string{"evt-" + strconv.Itoa(i)}, Target: state.TargetSandbox,
			Plan:  json.RawMessage(`{"steps": [{"action":"remove_member","note":"<&>"}]}`),
			Steps: json.RawMessage(`[{"call":"DELETE /members/1/","status":204}]`), Outcome: "ok"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func seqOf(es []state.Evidence) iter.Seq2[state.Evidence, error] {
	return func(yield func(state.Evidence, error) bool) {
		for _, e := range es {
			if !yield(e, nil) {
				return
			}
		}
	}
}

func TestEvidenceChain(t *testing.T) {
	ctx := t.Context()
	r, js, _ := openRecords(t, jsstate.Options{})
	l := r.Evidence
	people := []string{"id:E-1", "id:E-2", "id:E-3", ""}
	before := time.Now()
	written := appendN(t, l, 40, people)
	// Each person's records form a chain of their own (org-wide records the
	// chain "org"): seq counts within the chain, prev_hash links to the
	// person's record before.
	heads := map[string]state.Evidence{}
	byHash := map[string]state.Evidence{}
	for i, e := range written {
		prev, seen := heads[e.PersonKey]
		if e.Chain != jsstate.EvidenceChain(e.PersonKey) || e.Hash == "" ||
			(seen && (e.Seq != prev.Seq+1 || e.PrevHash != prev.Hash)) || (!seen && (e.Seq != 1 || e.PrevHash != "")) {
			t.Fatalf("record %d not chained: %+v", i, e)
		}
		heads[e.PersonKey] = e
		byHash[e.Hash] = e
	}
	if jsstate.EvidenceChain("") != "org" || len(jsstate.EvidenceChain("id:E-1")) != 32 {
		t.Fatalf("chain names %q %q", jsstate.EvidenceChain(""), jsstate.EvidenceChain("id:E-1"))
	}

	all := collect(t, l.Range(ctx, time.Time{}, time.Time{}))
	if len(all) != 40 {
		t.Fatalf("Range(all) = %d records", len(all))
	}
	if err := state.VerifyChainFrom("", seqOf(all)); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	if err := state.VerifyChain(l.Range(ctx, time.Time{}, time.Time{})); err != nil {
		t.Fatalf("intact chain, streamed: %v", err)
	}
	mine := collect(t, l.ByPerson(ctx, "id:E-2"))
	if len(mine) != 10 {
		t.Fatalf("ByPerson = %d records, want 10", len(mine))
	}
	for i, e := range mine {
		if e.PersonKey != "id:E-2" || e.Seq != uint64(i+1) || byHash[e.Hash].Seq != e.Seq {
			t.Fatalf("ByPerson[%d] = %+v", i, e)
		}
	}
	if got := collect(t, l.ByPerson(ctx, "id:nobody")); len(got) != 0 {
		t.Fatalf("ByPerson(nobody) = %d records", len(got))
	}
	// Range by At: the window covers exactly the records inside it.
	from, to := written[10].At, written[20].At
	win := collect(t, l.Range(ctx, from, to))
	if len(win) != 10 || win[0].Hash != written[10].Hash || win[9].Hash != written[19].Hash {
		t.Fatalf("Range window = %d records (first %v)", len(win), win)
	}
	if err := state.VerifyChain(seqOf(win)); err != nil {
		t.Fatalf("a contiguous window verifies on its own: %v", err)
	}
	if got := collect(t, l.Range(ctx, before.Add(-time.Hour), before.Add(-time.Minute))); len(got) != 0 {
		t.Fatalf("Range before any record = %d", len(got))
	}

	t.Run("ExportTampering", func(t *testing.T) {
		edited := slices.Clone(all)
		edited[5].Outcome = "skipped"
		mustBreak(t, "edited field", state.VerifyChain(seqOf(edited)))

		rehashed := slices.Clone(all)
		rehashed[5].Outcome = "skipped"
		rehashed[5].Hash, _ = state.ComputeHash(rehashed[5])
		mustBreak(t, "edited and rehashed", state.VerifyChain(seqOf(rehashed)))

		mustBreak(t, "deleted record", state.VerifyChain(seqOf(slices.Delete(slices.Clone(all), 7, 8))))

		// Records 3 and 7 are of one chain (the org's); the order across
		// chains is not part of any chain.
		swapped := slices.Clone(all)
		swapped[3], swapped[7] = swapped[7], swapped[3]
		mustBreak(t, "reordered", state.VerifyChain(seqOf(swapped)))

		mustBreak(t, "first record removed", state.VerifyChainFrom("", seqOf(all[1:])))
		var chain0 []state.Evidence
		for _, e := range all {
			if e.Chain == all[0].Chain {
				chain0 = append(chain0, e)
			}
		}
		if err := state.VerifyChainFrom(chain0[0].Hash, seqOf(chain0[1:])); err != nil {
			t.Fatalf("anchored on the previous export's last hash: %v", err)
		}

		plan := slices.Clone(all)
		plan[2].Plan = json.RawMessage(`{"steps":[]}`)
		mustBreak(t, "edited plan", state.VerifyChain(seqOf(plan)))
	})

	t.Run("StoreTampering", func(t *testing.T) {
		st, err := js.Stream(ctx, jsstate.StreamEvidence)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteMsg(ctx, 8); err == nil {
			t.Fatal("the evidence stream allowed deleting a record")
		}
		if err := st.Purge(ctx); err == nil {
			t.Fatal("the evidence stream allowed a purge")
		}
		// A writer with publish rights "edits" record 8 by publishing a
		// modified copy (rehashed, same seq) on its subject.
		forged := all[7]
		forged.Outcome = "not removed"
		forged.Hash, _ = state.ComputeHash(forged)
		b, _ := json.Marshal(forged)
		if _, err := js.Publish(ctx, jsstate.EvidenceSubject(forged.PersonKey), b); err != nil {
			t.Fatal(err)
		}
		mustBreak(t, "forged copy appended", state.VerifyChain(l.Range(ctx, time.Time{}, time.Time{})))
		// ByPerson shows both the original and the forgery.
		if got := collect(t, l.ByPerson(ctx, forged.PersonKey)); len(got) != 11 {
			t.Fatalf("ByPerson after forgery = %d records", len(got))
		}
	})
}

func mustBreak(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, state.ErrChainBroken) {
		t.Fatalf("%s: VerifyChain = %v; want ErrChainBroken", what, err)
	}
}

// Concurrent appenders on separate connections (replicas), each with
// several goroutines, writing for their own people and all for one shared
// person: every chain stays gap-free, nothing is lost or doubled.
func TestEvidenceConcurrentAppendersOneChain(t *testing.T) {
	ctx := t.Context()
	_, _, replica := openRecords(t, jsstate.Options{})
	const writers, each = 4, 40
	logs := make([]*jsstate.EvidenceLog, writers)
	for i := range logs {
		logs[i] = replica(t).Evidence // separate connections, like separate replicas
	}
	var wg sync.WaitGroup
	for w := range 2 * writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each / 2 {
				person := fmt.Sprintf("id:W%d", w%writers)
				if i%2 == 1 {
					person = "id:SHARED"
				}
				if _, err := logs[w%writers].Append(ctx, state.Evidence{PersonKey: person, Kind: state.EvidenceConvergence,
					EventIDs: []string{fmt.Sprintf("w%d-%d", w, i)}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	all := collect(t, logs[0].Range(ctx, time.Time{}, time.Time{}))
	if len(all) != writers*each {
		t.Fatalf("%d records, want %d", len(all), writers*each)
	}
	if err := state.VerifyChainFrom("", seqOf(all)); err != nil {
		t.Fatalf("concurrent appends broke the chain: %v", err)
	}
	ids := map[string]bool{}
	shared := uint64(0)
	for _, e := range all {
		ids[e.EventIDs[0]] = true
		if e.PersonKey == "id:SHARED" {
			shared = max(shared, e.Seq)
		}
	}
	if len(ids) != writers*each {
		t.Fatalf("%d distinct records, want %d (duplicates or losses)", len(ids), writers*each)
	}
	if shared != writers*each/2 {
		t.Fatalf("the shared person's chain ends at seq %d, want %d", shared, writers*each/2)
	}
}

func due(id, person, field string, at time.Time, v time.Time) state.Due {
	return state.Due{ID: id, PersonKey: person, Field: field, EffectiveAt: at,
		Version: state.Version{OccurredAt: v, Source: "generic"}, Event: json.RawMessage(`{"id":"` + id + `"}`)}
}

func TestDueQueue(t *testing.T) {
	ctx := t.Context()
	r, _, _ := openRecords(t, jsstate.Options{DueClaim: time.Minute})
	q := r.Due
	now := t0

	mustSchedule := func(d state.Due, want bool) {
		t.Helper()
		ok, err := q.Schedule(ctx, d)
		if err != nil || ok != want {
			t.Fatalf("Schedule(%s) = %t, %v; want %t", d.ID, ok, err, want)
		}
	}
	mustSchedule(due("a1", "id:A", "status", now.Add(2*time.Hour), now), true)
	// A later event for the same person and field replaces it...
	mustSchedule(due("a2", "id:A", "status", now.Add(3*time.Hour), now.Add(time.Minute)), true)
	// ...an older one does not.
	mustSchedule(due("a0", "id:A", "status", now.Add(time.Hour), now.Add(-time.Minute)), false)
	// Another field of the same person is its own change.
	mustSchedule(due("a3", "id:A", "department", now.Add(time.Hour), now), true)
	mustSchedule(due("b1", "id:B", "status", now.Add(30*time.Minute), now), true)
	mustSchedule(due("c1", "id:C", "status", now.Add(4*time.Hour), now), true)
	if n, err := q.Len(ctx); err != nil || n != 4 {
		t.Fatalf("Len = %d, %v; want 4", n, err)
	}
	ids := func(ds []state.Due) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	listed := ids(collect(t, q.List(ctx)))
	slices.Sort(listed)
	if !slices.Equal(listed, []string{"a2", "a3", "b1", "c1"}) {
		t.Fatalf("List = %v", listed)
	}

	if got, err := q.PopDue(ctx, now, 10); err != nil || len(got) != 0 {
		t.Fatalf("PopDue before anything is due = %v, %v", ids(got), err)
	}
	got, err := q.PopDue(ctx, now.Add(150*time.Minute), 10)
	if err != nil || !slices.Equal(ids(got), []string{"b1", "a3"}) {
		t.Fatalf("PopDue = %v, %v; want [b1 a3] (earliest first, a2 not due yet)", ids(got), err)
	}
	if string(got[0].Event) != `{"id":"b1"}` || got[0].Revision == 0 || got[0].ClaimedUntil.IsZero() {
		t.Fatalf("popped change = %+v", got[0])
	}
	// Claimed changes are not handed out again while the claim lasts.
	if again, err := q.PopDue(ctx, now.Add(150*time.Minute+30*time.Second), 10); err != nil || len(again) != 0 {
		t.Fatalf("second PopDue = %v, %v", ids(again), err)
	}
	if err := q.Done(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	// a3's popper "crashed": after the claim time it is handed out again.
	re, err := q.PopDue(ctx, now.Add(150*time.Minute+2*time.Minute), 10)
	if err != nil || !slices.Equal(ids(re), []string{"a3"}) {
		t.Fatalf("PopDue after claim expiry = %v, %v", ids(re), err)
	}
	// The old claim's Done no longer removes it: the revision moved on.
	if err := q.Done(ctx, got[1]); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Len(ctx); n != 3 {
		t.Fatalf("Len after stale Done = %d, want 3", n)
	}
	// A replacement while claimed survives the claimant's Done.
	mustSchedule(due("a4", "id:A", "department", now.Add(5*time.Hour), now.Add(time.Hour)), true)
	if err := q.Done(ctx, re[0]); err != nil {
		t.Fatal(err)
	}
	listed = ids(collect(t, q.List(ctx)))
	slices.Sort(listed)
	if !slices.Equal(listed, []string{"a2", "a4", "c1"}) {
		t.Fatalf("List after replace during claim = %v", listed)
	}

	// Cancel one field; a rehire cancels all of a person's changes.
	if err := q.Cancel(ctx, "id:C", "status"); err != nil {
		t.Fatal(err)
	}
	if err := q.Cancel(ctx, "id:C", "status"); err != nil {
		t.Fatalf("cancel of nothing: %v", err)
	}
	if err := q.Cancel(ctx, "id:A", ""); err != nil {
		t.Fatal(err)
	}
	if n, err := q.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len after cancels = %d, %v", n, err)
	}
	// A cancelled key can be scheduled again.
	mustSchedule(due("a5", "id:A", "status", now, now.Add(2*time.Hour)), true)
	if got, _ := q.PopDue(ctx, now, 10); !slices.Equal(ids(got), []string{"a5"}) {
		t.Fatalf("PopDue after reschedule = %v", ids(got))
	}
	if _, err := q.Schedule(ctx, state.Due{ID: "x", PersonKey: "id:A"}); err == nil {
		t.Fatal("due change without field accepted")
	}
}

func TestDuePopExactlyOnce(t *testing.T) {
	ctx := t.Context()
	r, _, replica := openRecords(t, jsstate.Options{})
	const items, poppers = 300, 6
	for i := range items {
		if _, err := r.Due.Schedule(ctx, due("d"+strconv.Itoa(i), "id:P"+strconv.Itoa(i), "status", t0.Add(time.Duration(i)*time.Second), t0)); err != nil {
			t.Fatal(err)
		}
	}
	// One not yet due.
	if _, err := r.Due.Schedule(ctx, due("later", "id:L", "status", t0.Add(24*time.Hour), t0)); err != nil {
		t.Fatal(err)
	}
	qs := make([]*jsstate.DueQueue, poppers)
	for i := range qs {
		qs[i] = replica(t).Due
	}
	var (
		mu    sync.Mutex
		count = map[string]int{}
		empty atomic.Int32
		wg    sync.WaitGroup
	)
	now := t0.Add(time.Hour)
	for p := range poppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for misses := 0; misses < 3; {
				got, err := qs[p].PopDue(ctx, now, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					misses++
					empty.Add(1)
					continue
				}
				misses = 0
				for _, d := range got {
					mu.Lock()
					count[d.ID]++
					mu.Unlock()
					if err := qs[p].Done(ctx, d); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(count) != items {
		t.Fatalf("%d distinct changes popped, want %d", len(count), items)
	}
	for id, n := range count {
		if n != 1 {
			t.Fatalf("%s popped %d times", id, n)
		}
	}
	if n, err := r.Due.Len(ctx); err != nil || n != 1 {
		t.Fatalf("Len after popping = %d, %v; want 1 (the later change)", n, err)
	}
}

func TestRunApproval(t *testing.T) {
	ctx := t.Context()
	clock := t0
	r, _, replica := openRecords(t, jsstate.Options{Now: func() time.Time { return clock }})
	runs := r.Runs
	halted := state.ReconcileRun{ID: "run-1", StartedAt: t0, FinishedAt: t0.Add(time.Minute), Status: state.RunHalted,
		Counts: map[string]int{"remove_member": 40}, Plan: json.RawMessage(`{"steps":[]}`), ExpiresAt: t0.Add(time.Hour)}
	if err := runs.Put(ctx, halted); err != nil {
		t.Fatal(err)
	}
	const approvers = 8
	others := make([]*jsstate.Runs, approvers)
	for i := range others {
		others[i] = replica(t).Runs
	}
	var (
		wg      sync.WaitGroup
		winners atomic.Int32
		winner  atomic.Value
	)
	for i := range approvers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := "op" + strconv.Itoa(i)
			got, err := others[i].Approve(ctx, "run-1", who, t0.Add(10*time.Minute))
			switch {
			case err == nil:
				winners.Add(1)
				winner.Store(who)
				if got.Status != state.RunApproved || got.ApprovedBy != who {
					t.Errorf("approved run = %+v", got)
				}
			case !errors.Is(err, state.ErrRunNotHalted):
				t.Errorf("losing approver %s: %v; want ErrRunNotHalted", who, err)
			}
		}()
	}
	wg.Wait()
	if winners.Load() != 1 {
		t.Fatalf("%d approvals succeeded, want exactly 1", winners.Load())
	}
	got, err := runs.Get(ctx, "run-1")
	if err != nil || got.Status != state.RunApproved || got.ApprovedBy != winner.Load() || !got.ApprovedAt.Equal(t0.Add(10*time.Minute)) || got.Counts["remove_member"] != 40 {
		t.Fatalf("stored run = %+v, %v", got, err)
	}
	if _, err := runs.Approve(ctx, "run-1", "late", t0.Add(11*time.Minute)); !errors.Is(err, state.ErrRunNotHalted) {
		t.Fatalf("approving twice: %v", err)
	}

	// A halted plan past its expiry reads as expired and cannot be approved.
	halted.ID = "run-2"
	if err := runs.Put(ctx, halted); err != nil {
		t.Fatal(err)
	}
	if got, _ := runs.Get(ctx, "run-2"); got.Status != state.RunHalted {
		t.Fatalf("before expiry: %s", got.Status)
	}
	clock = t0.Add(2 * time.Hour)
	if got, _ := runs.Get(ctx, "run-2"); got.Status != state.RunExpired {
		t.Fatalf("after expiry: %s", got.Status)
	}
	if _, err := runs.Approve(ctx, "run-2", "op", t0.Add(time.Hour)); !errors.Is(err, state.ErrRunExpired) {
		t.Fatalf("approving an expired run: %v", err)
	}
	if err := runs.Put(ctx, state.ReconcileRun{ID: "run-3", Status: state.RunApplied, StartedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := runs.Approve(ctx, "run-3", "op", t0); !errors.Is(err, state.ErrRunNotHalted) {
		t.Fatalf("approving an applied run: %v", err)
	}
	if _, err := runs.Approve(ctx, "missing", "op", t0); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("approving a missing run: %v", err)
	}
	byID := map[string]string{}
	for _, run := range collect(t, runs.List(ctx)) {
		byID[run.ID] = run.Status
	}
	want := map[string]string{"run-1": state.RunApproved, "run-2": state.RunExpired, "run-3": state.RunApplied}
	if fmt.Sprint(byID) != fmt.Sprint(want) {
		t.Fatalf("List = %v; want %v", byID, want)
	}
}

// deleteConsumers removes every consumer of a stream, as losing the node that
// held a scan's in-memory consumer does.
func deleteConsumers(t *testing.T, js jetstream.JetStream, stream string) int {
	t.Helper()
	st, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range st.ListConsumers(t.Context()).Info() {
		names = append(names, name.Name)
	}
	for _, name := range names {
		if err := st.DeleteConsumer(t.Context(), name); err != nil {
			t.Fatal(err)
		}
	}
	return len(names)
}

// A scan whose consumer disappears mid-way resumes on a new one: every record
// is listed exactly once, in both delivery modes (last per subject for the
// directory, by sequence for the evidence log).
func TestScanSurvivesLosingItsConsumer(t *testing.T) {
	ctx := t.Context()
	r, js, _ := openRecords(t, jsstate.Options{})
	const n = 700 // several scan batches
	for i := range n {
		key := "id:E-" + strconv.Itoa(i)
		if _, _, err := r.Directory.Apply(ctx, key, events.Person{ID: "E-" + strconv.Itoa(i), Email: fmt.Sprintf("p%d@acme.com", i), Status: events.Active},
			state.Version{OccurredAt: t0, Source: "roster", Seq: uint64(i)}, "e"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Evidence.Append(ctx, state.Evidence{PersonKey: key, Kind: state.EvidenceConvergence}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("directory", func(t *testing.T) {
		seen := map[string]int{}
		deleted := 0
		for rec, err := range r.Directory.List(ctx) {
			if err != nil {
				t.Fatalf("after %d records: %v", len(seen), err)
			}
			seen[rec.Key]++
			if len(seen) == 300 {
				deleted = deleteConsumers(t, js, "KV_"+jsstate.BucketDirectory)
			}
		}
		if deleted == 0 {
			t.Fatal("the scan's consumer was not found to delete")
		}
		if len(seen) != n {
			t.Fatalf("listed %d records, want %d", len(seen), n)
		}
		for k, c := range seen {
			if c != 1 {
				t.Fatalf("%s listed %d times", k, c)
			}
		}
	})
	t.Run("evidence", func(t *testing.T) {
		got := 0
		deleted := 0
		prev := -1
		for ev, err := range r.Evidence.Range(ctx, time.Time{}, time.Time{}) {
			if err != nil {
				t.Fatalf("after %d records: %v", got, err)
			}
			// One record per person, appended in the order of i.
			i, _ := strconv.Atoi(strings.TrimPrefix(ev.PersonKey, "id:E-"))
			if i <= prev {
				t.Fatalf("record %d after %d: a record was listed twice or out of order", i, prev)
			}
			prev = i
			got++
			if got == 300 {
				deleted = deleteConsumers(t, js, jsstate.StreamEvidence)
			}
		}
		if deleted == 0 {
			t.Fatal("the scan's consumer was not found to delete")
		}
		if got != n {
			t.Fatalf("listed %d evidence records, want %d", got, n)
		}
	})
}

// ClaimLink: of many replicas claiming one link at once, exactly one wins and
// every claimant learns the winner.
func TestClaimLinkOneWinner(t *testing.T) {
	ctx := t.Context()
	r, _, replica := openRecords(t, jsstate.Options{})
	dirs := []*jsstate.Directory{r.Directory, replica(t).Directory}
	var wg sync.WaitGroup
	owners := make([]string, 12)
	for i := range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := dirs[i%2].ClaimLink(ctx, "email", "new.hire@acme.com", fmt.Sprintf("id:E-%d", i))
			if err != nil {
				t.Error(err)
			}
			owners[i] = o
		}()
	}
	wg.Wait()
	won := 0
	for i, o := range owners {
		if o != owners[0] {
			t.Fatalf("claimants disagree on the owner: %v", owners)
		}
		if o == fmt.Sprintf("id:E-%d", i) {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d claims won, want 1 (%v)", won, owners)
	}
	if k, err := r.Directory.Resolve(ctx, "email", "new.hire@acme.com"); err != nil || k != owners[0] {
		t.Fatalf("Resolve = %q, %v; want %q", k, err, owners[0])
	}
}

// A status event that replaces no scheduled change writes nothing to the due
// bucket (no purge, no marker): the stream's last sequence stays put. One
// that does replace a change removes it.
func TestDueCancelOfNothingWritesNothing(t *testing.T) {
	ctx := t.Context()
	r, js, _ := openRecords(t, jsstate.Options{})
	st, err := js.Stream(ctx, "KV_"+jsstate.BucketDue)
	if err != nil {
		t.Fatal(err)
	}
	last := func() uint64 {
		t.Helper()
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	before := last()
	for range 3 {
		if err := r.Due.Cancel(ctx, "id:N", "status"); err != nil {
			t.Fatal(err)
		}
	}
	if after := last(); after != before {
		t.Fatalf("cancel of nothing wrote to the due stream: last seq %d -> %d", before, after)
	}
	now := time.Now().UTC()
	if _, err := r.Due.Schedule(ctx, state.Due{ID: "s1", PersonKey: "id:N", Field: "status", EffectiveAt: now.Add(time.Hour),
		Version: state.Version{OccurredAt: now.Add(time.Hour)}, Event: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Due.Cancel(ctx, "id:N", "status"); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Due.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len after cancelling a scheduled change = %d, %v; want 0", n, err)
	}
}
