package converge_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// flakySink fails its first n writes.
type flakySink struct {
	mu      sync.Mutex
	fail    int
	calls   int
	written []state.Evidence
}

func (f *flakySink) Append(_ context.Context, e state.Evidence) (state.Evidence, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fail {
		return state.Evidence{}, errors.New("jetstream: no responders")
	}
	f.written = append(f.written, e)
	return e, nil
}

func evidenceConverger(t *testing.T, sink converge.EvidenceLog, retry time.Duration) (*sentrytest.Server, *converge.Converger) {
	t.Helper()
	return gatedConverger(t, sink, retry, nil)
}

// gatedConverger is a converger recording evidence in sink, whose pre-check
// asks gate (nil: none).
func gatedConverger(t *testing.T, sink converge.EvidenceLog, retry time.Duration, gate converge.Gate) (*sentrytest.Server, *converge.Converger) {
	t.Helper()
	sb := sentrytest.NewServer(t, sentrytest.Options{RateLimit: -1})
	c, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: &safetytest.Gate{}, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	conv, err := converge.New(converge.Options{Sentry: c, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole,
		Policy: func() policy.Policy { return pol }, Evidence: sink, EvidenceRetry: retry, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	return sb, conv
}

// A failed evidence write is retried; the convergence succeeds once the
// record is written.
func TestEvidenceWriteIsRetried(t *testing.T) {
	sink := &flakySink{fail: 3}
	sb, conv := evidenceConverger(t, sink, 10*time.Second)
	res, err := conv.Converge(context.Background(), leaver("jane.doe@acme.test"), held)
	if err != nil || !res.Removed {
		t.Fatalf("converge: %+v %v", res, err)
	}
	if _, ok := sb.Member("jane.doe@acme.test"); ok {
		t.Fatal("jane is still a member")
	}
	if sink.calls != 4 || len(sink.written) != 1 || sink.written[0].Outcome != string(converge.OutcomeApplied) {
		t.Fatalf("evidence writes: %d calls, written %+v", sink.calls, sink.written)
	}
}

// A record that cannot be written is never dropped silently: the convergence
// fails with an *EvidenceError carrying the record (the worker dead-letters
// the event with it instead of acknowledging).
func TestEvidenceWriteThatKeepsFailingFailsTheConvergence(t *testing.T) {
	sink := &flakySink{fail: 1 << 30}
	_, conv := evidenceConverger(t, sink, 300*time.Millisecond)
	_, err := conv.Converge(context.Background(), leaver("jane.doe@acme.test"), held)
	var ee *converge.EvidenceError
	if !errors.Is(err, converge.ErrEvidence) || !errors.As(err, &ee) {
		t.Fatalf("err = %v, want an EvidenceError", err)
	}
	var steps []converge.Step
	if err := json.Unmarshal(ee.Record.Steps, &steps); err != nil {
		t.Fatal(err)
	}
	if ee.Record.Email != "jane.doe@acme.test" || len(steps) == 0 || steps[0].Action != converge.ActRemoveMember {
		t.Fatalf("the error does not carry the record: %+v", ee.Record)
	}
	if !strings.Contains(err.Error(), `"remove_member"`) {
		t.Fatalf("the error text does not carry the record: %s", err)
	}
	if sink.calls < 2 {
		t.Fatalf("%d write attempts, want retries", sink.calls)
	}
}

// heldGate is the gate's view: everything held for kind.
type heldGate struct{ kind string }

func (h heldGate) Held(removal bool) (string, string) {
	if h.kind == sentry.RefusedBrakes && !removal {
		return "", ""
	}
	return h.kind, "held for the test"
}

// A plan the gate holds is not started: the outcome is halted, the error a
// RetryLater naming the gate's reason, Sentry is not touched, and repeated
// deliveries while held write one halted record, not one each.
func TestHeldPlanWaitsWithOneRecord(t *testing.T) {
	sink := &flakySink{}
	sb, conv := gatedConverger(t, sink, time.Second, heldGate{sentry.RefusedBrakes})
	sb.ResetStats()
	for range 3 {
		res, err := conv.Converge(context.Background(), leaver("jane.doe@acme.test"), held)
		var rl *converge.RetryLater
		if !errors.As(err, &rl) || rl.Held != sentry.RefusedBrakes || res.Outcome != converge.OutcomeHalted {
			t.Fatalf("held leaver: %+v %v", res, err)
		}
	}
	if _, ok := sb.Member("jane.doe@acme.test"); !ok {
		t.Fatal("a held removal was made")
	}
	if len(sb.Stats().Mutations) != 0 {
		t.Fatalf("mutations while held: %v", sb.Stats().Mutations)
	}
	if len(sink.written) != 1 || sink.written[0].Kind != "halted" {
		t.Fatalf("halted records: %+v, want exactly one", sink.written)
	}
}

// A leaver's record carries the access read before the removal and every
// Sentry request sent, with its status and time (the member DELETE answers
// 204: src/sentry/core/endpoints/organization_member/details.py).
func TestEvidenceCarriesSnapshotAndRequests(t *testing.T) {
	sink := &flakySink{}
	_, conv := evidenceConverger(t, sink, time.Second)
	before := time.Now().UTC()
	res, err := conv.Converge(context.Background(), leaver("jane.doe@acme.test"), held)
	if err != nil || !res.Removed || len(sink.written) != 1 {
		t.Fatalf("converge: %+v %v (%d records)", res, err, len(sink.written))
	}
	e := sink.written[0]
	if e.Snapshot == nil || !strings.EqualFold(e.Snapshot.Email, "jane.doe@acme.test") || e.Snapshot.MemberID == "" || e.Snapshot.OrgRole == "" {
		t.Fatalf("snapshot before removal: %+v", e.Snapshot)
	}
	var del *state.SentryRequest
	for i, r := range e.Requests {
		if r.At.Before(before) || r.Path == "" {
			t.Fatalf("request %d: %+v", i, r)
		}
		if r.Method == "DELETE" {
			del = &e.Requests[i]
		}
	}
	if del == nil || del.Status != 204 || !strings.Contains(del.Path, "/members/"+e.Snapshot.MemberID+"/") {
		t.Fatalf("the removal request is not recorded with its status: %+v", e.Requests)
	}
	if e.Requests[0].Method != "GET" {
		t.Fatalf("the reads come first: %+v", e.Requests)
	}
}

// A termination with nothing left to remove still writes its record
// ("already removed"), so the deprovisioning report sees every leaver.
func TestAlreadyRemovedLeaverHasARecord(t *testing.T) {
	sink := &flakySink{}
	_, conv := evidenceConverger(t, sink, time.Second)
	if _, err := conv.Converge(context.Background(), leaver("jane.doe@acme.test"), held); err != nil {
		t.Fatal(err)
	}
	res, err := conv.Converge(context.Background(), leaver("jane.doe@acme.test"), held)
	if err != nil || res.Outcome != converge.OutcomeInSync {
		t.Fatalf("second convergence: %+v %v", res, err)
	}
	if len(sink.written) != 2 || sink.written[1].Outcome != string(converge.OutcomeInSync) || sink.written[1].Status != "terminated" {
		t.Fatalf("records: %+v", sink.written)
	}
}
