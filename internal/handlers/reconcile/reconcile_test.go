package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
)

type harness struct {
	sb      *sentrytest.Server
	client  *sentry.Client
	records *jsstate.Records
	rec     *reconcile.Reconciler
	pol     *policy.Policy
	coord   state.Coordinator
	opts    reconcile.Options
}

func redisURL() string {
	if u := os.Getenv("JML_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

func mustHarness(t testing.TB, seed *sentrytest.Seed, polYAML string) *harness {
	t.Helper()
	return mustHarnessGate(t, seed, polYAML, nil)
}

// mustHarnessGate is mustHarness whose client passes gate (nil: one that
// admits everything).
func mustHarnessGate(t testing.TB, seed *sentrytest.Seed, polYAML string, gate sentry.Gate) *harness {
	t.Helper()
	ctx := context.Background()
	if gate == nil {
		gate = &safetytest.Gate{}
	}
	sb := sentrytest.NewServer(t, sentrytest.Options{Seed: seed, RateLimit: -1})
	c, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: gate, MaxRetries: 1,
		Budget: sentry.NewLocalBudget(sentry.LocalBudgetOptions{DefaultLimit: -1, DefaultConcurrency: -1})})
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("test.yaml", []byte(polYAML))
	if err != nil {
		t.Fatal(err)
	}
	_, _, js := natstest.Run(t)
	records, err := jsstate.Open(ctx, js, jsstate.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	coord, err := redisstate.Open(ctx, redisstate.Options{URL: redisURL(), Prefix: fmt.Sprintf("jmltest:%d:", time.Now().UnixNano())})
	if err != nil {
		t.Fatalf("redis at %s: %v", redisURL(), err)
	}
	t.Cleanup(func() { _ = coord.Close() })
	h := &harness{sb: sb, client: c, records: records, pol: &pol, coord: coord}
	tokens := converge.NewTokenIndex()
	conv, err := converge.New(converge.Options{Sentry: c, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole,
		Policy: func() policy.Policy { return *h.pol }, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	h.opts = reconcile.Options{Sentry: c, Converger: conv, Directory: records.Directory, Runs: records.Runs,
		Evidence: records.Evidence, Tokens: tokens, Leases: coord, Owner: "test", Policy: func() policy.Policy { return *h.pol },
		SelfMemberID: me.ID, SelfEmail: me.Email, Concurrency: 4}
	h.rec, err = reconcile.New(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) person(t testing.TB, email string, status events.Status, dept string) {
	t.Helper()
	p := events.Person{Email: email, Status: status, Department: dept, Groups: []string{}}
	v := state.Version{OccurredAt: time.Now().UTC(), Source: "test", Seq: uint64(time.Now().UnixNano())}
	if _, _, err := h.records.Directory.Apply(context.Background(), p.Key(), p, v, "test"); err != nil {
		t.Fatal(err)
	}
	if err := h.records.Directory.Link(context.Background(), "email", strings.ToLower(email), p.Key()); err != nil {
		t.Fatal(err)
	}
}

// everyoneActive puts every current sandbox member into the directory as active.
func (h *harness) everyoneActive(t testing.TB) {
	t.Helper()
	for m, err := range h.client.ListMembers(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		h.person(t, m.Email, events.Active, "")
	}
}

func (h *harness) member(email string) *sentrytest.MemberView {
	for _, m := range h.sb.Members() {
		if strings.EqualFold(m.Email, email) {
			mm := m
			return &mm
		}
	}
	return nil
}

func TestBrakeBoundaries(t *testing.T) {
	cases := []struct {
		name              string
		removals, members int
		max               int
		ratio             float64
		halt              bool
	}{
		{"none", 0, 10, 0, 0.1, false},
		{"at max_removals", 25, 1000, 25, 0.5, false},
		{"one above max_removals", 26, 1000, 25, 0.5, true},
		{"at ratio", 10, 100, 25, 0.10, false},
		{"one above ratio", 11, 100, 25, 0.10, true},
		{"ratio of a small org", 2, 10, 25, 0.10, true},
		{"one of ten at ratio", 1, 10, 25, 0.10, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := reconcile.BrakeReason(tc.removals, tc.members, policy.Reconcile{MaxRemovals: tc.max, MaxRemovalRatio: tc.ratio})
			if (got != "") != tc.halt {
				t.Fatalf("BrakeReason(%d of %d, max %d, ratio %g) = %q, want halt=%v", tc.removals, tc.members, tc.max, tc.ratio, got, tc.halt)
			}
		})
	}
}

func TestNoChangeRunMakesTheMinimumCalls(t *testing.T) {
	// The demo's non-member roles are protected, so the directory agrees with Sentry.
	h := mustHarness(t, sentrytest.DemoSeed(), "protected: [maya.manager@acme.test, rachel.green@acme.test, umar.farouk@acme.test]")
	h.everyoneActive(t)
	h.sb.ResetStats()
	sum, err := h.rec.Run(context.Background(), reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != state.RunApplied || sum.Counts.Remove+sum.Counts.Invite+sum.Counts.Update != 0 {
		t.Fatalf("summary = %+v, want an applied run without changes", sum)
	}
	st := h.sb.Stats()
	// + the token list and one audit-log page (token hygiene and the token index).
	if min := st.ReconcileMinimumCalls + 2; st.TotalRequests > min {
		t.Fatalf("api calls = %d, want <= %d (minimum %d + token list + audit page): %+v", st.TotalRequests, min, st.ReconcileMinimumCalls, st.Requests)
	}
	if len(st.Mutations) != 0 {
		t.Fatalf("mutations in a no-change run: %v", st.Mutations)
	}
}

const driftPolicy = `
managed_teams: [payments, platform, mobile, data]
rules:
  - match: {department: Payments}
    teams: [{slug: payments, role: contributor}]
  - match: {department: Platform}
    teams: [{slug: platform, role: contributor}]
leaver: {org_tokens: revoke}
reconcile: {orphans: remove, max_removals: 1, max_removal_ratio: 0.5}
token_hygiene: {unused_days: 90, action: revoke}
`

func driftSeed() *sentrytest.Seed {
	seed := sentrytest.DemoSeed()
	seed.Members = append(seed.Members,
		sentrytest.SeedMember{Email: "hand.added@acme.test", OrgRole: "member", Teams: map[string]string{"data": ""}},
		sentrytest.SeedMember{Email: "missed.leaver@acme.test", OrgRole: "member", Teams: map[string]string{"payments": ""}},
		sentrytest.SeedMember{Email: "wrong.teams@acme.test", OrgRole: "member", Teams: map[string]string{"mobile": "", "data": "admin"}},
		sentrytest.SeedMember{Email: "gone.creator@acme.test", OrgRole: "member"},
	)
	old := time.Now().Add(-200 * 24 * time.Hour)
	seed.OrgAuthTokens = append(seed.OrgAuthTokens,
		sentrytest.SeedOrgAuthToken{Name: "stale-deploy", CreatedBy: "jane.doe@acme.test", Created: old, LastUsed: old},
		sentrytest.SeedOrgAuthToken{Name: "orphaned-ci", CreatedBy: "gone.creator@acme.test", LastUsed: time.Now()},
	)
	return seed
}

// setupDrift: everyone in the directory as they should be, except the drift.
func setupDrift(t *testing.T) *harness {
	h := mustHarness(t, driftSeed(), driftPolicy)
	ctx := context.Background()
	// gone.creator left earlier (by hand); their token outlived them.
	gc := h.member("gone.creator@acme.test")
	if err := h.client.DeleteMember(ctx, gc.ID); err != nil {
		t.Fatal(err)
	}
	for m, err := range h.client.ListMembers(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		switch strings.ToLower(m.Email) {
		case "hand.added@acme.test": // not in HR at all
		case "missed.leaver@acme.test":
			h.person(t, m.Email, events.Terminated, "Payments")
		case "wrong.teams@acme.test":
			h.person(t, m.Email, events.Active, "Platform")
		default:
			h.person(t, m.Email, events.Active, "")
		}
	}
	h.person(t, "missing.joiner@acme.test", events.Active, "Payments")
	h.sb.ResetStats()
	return h
}

func TestDriftedOrgConvergesInOneApprovedRun(t *testing.T) {
	h := setupDrift(t)
	ctx := context.Background()
	sum, err := h.rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != state.RunHalted || sum.Counts.Remove != 2 || sum.ExpiresAt == nil {
		t.Fatalf("summary = %+v, want halted with 2 removals", sum)
	}
	if h.member("missed.leaver@acme.test") == nil || h.member("hand.added@acme.test") == nil {
		t.Fatal("a halted run removed members")
	}
	if len(h.sb.Stats().Mutations) != 0 {
		t.Fatalf("a halted run changed Sentry: %v", h.sb.Stats().Mutations)
	}
	// The stored run says why it halted (jml runs shows it).
	if stored, err := h.opts.Runs.Get(ctx, sum.RunID); err != nil || stored.Reason != sum.Halted || stored.Reason == "" {
		t.Fatalf("stored halted run: reason %q, want %q (%v)", stored.Reason, sum.Halted, err)
	}
	app, err := h.rec.Approve(ctx, sum.RunID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if app.Status != state.RunApplied || app.Failed != 0 || app.Skipped != 0 {
		t.Fatalf("approval = %+v", app)
	}
	for _, gone := range []string{"missed.leaver@acme.test", "hand.added@acme.test"} {
		if h.member(gone) != nil {
			t.Errorf("%s is still a member", gone)
		}
	}
	wt := h.member("wrong.teams@acme.test")
	if wt == nil {
		t.Fatal("wrong.teams is not a member")
	}
	if _, on := wt.Teams["platform"]; len(wt.Teams) != 1 || !on {
		t.Errorf("wrong.teams teams = %+v, want [platform]", wt)
	}
	if h.member("missing.joiner@acme.test") == nil {
		t.Error("missing.joiner was not invited")
	}
	toks, err := h.client.ListOrgAuthTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks {
		if tk.Name == "stale-deploy" || tk.Name == "orphaned-ci" {
			t.Errorf("token %s survived", tk.Name)
		}
	}
	// One approved run converged it: the next run has nothing to do.
	again, err := h.rec.Run(ctx, reconcile.RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := again.Counts; c.Remove+c.Invite+c.Update != 0 {
		t.Fatalf("after the approved run: counts = %+v, reports = %+v", c, again.Reports)
	}
	if _, err := h.rec.Approve(ctx, sum.RunID, "bob"); !errors.Is(err, state.ErrRunNotHalted) {
		t.Fatalf("second approval: err = %v, want ErrRunNotHalted", err)
	}
}

func TestApprovalAppliesTheStoredPlanNotANewOne(t *testing.T) {
	h := setupDrift(t)
	ctx := context.Background()
	sum, err := h.rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != state.RunHalted {
		t.Fatalf("status = %s", sum.Status)
	}
	// After the halt: a new leaver (not in the stored plan), and the missed
	// leaver is rehired (their stored removal no longer applies).
	h.person(t, "bob.martin@acme.test", events.Terminated, "")
	h.person(t, "missed.leaver@acme.test", events.Active, "Payments")
	app, err := h.rec.Approve(ctx, sum.RunID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if h.member("bob.martin@acme.test") == nil {
		t.Error("bob.martin was removed: the approval applied a new plan")
	}
	if h.member("missed.leaver@acme.test") == nil {
		t.Error("missed.leaver was removed although the re-check no longer wants it")
	}
	if h.member("hand.added@acme.test") != nil {
		t.Error("the stored orphan removal was not applied")
	}
	if !strings.Contains(strings.Join(app.Errors, "\n"), "skipped: missed.leaver@acme.test") {
		t.Errorf("the rehired leaver's stored removal was not reported as skipped: %+v", app)
	}
}

func TestHaltedPlansExpire(t *testing.T) {
	h := setupDrift(t)
	ctx := context.Background()
	sum, err := h.rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := h.records.Runs.Get(ctx, sum.RunID)
	if err != nil {
		t.Fatal(err)
	}
	run.ExpiresAt = time.Now().Add(-time.Minute)
	if err := h.records.Runs.Put(ctx, run); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rec.Approve(ctx, sum.RunID, "alice"); !errors.Is(err, state.ErrRunExpired) {
		t.Fatalf("err = %v, want ErrRunExpired", err)
	}
	if h.member("missed.leaver@acme.test") == nil {
		t.Fatal("an expired plan was applied")
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	h := setupDrift(t)
	h.pol.Reconcile.MaxRemovals = 100
	sum, err := h.rec.Run(context.Background(), reconcile.RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != state.RunPlanned || sum.Counts.Remove != 2 || sum.Counts.Invite != 1 {
		t.Fatalf("summary = %+v", sum)
	}
	if m := h.sb.Stats().Mutations; len(m) != 0 {
		t.Fatalf("dry run mutated: %v", m)
	}
}

// hidingDirectory lists every record but one, as a listing does when that
// person is written while the scan runs.
type hidingDirectory struct {
	reconcile.Directory
	hide string
}

func (d hidingDirectory) List(ctx context.Context) iter.Seq2[state.PersonRecord, error] {
	return func(yield func(state.PersonRecord, error) bool) {
		for rec, err := range d.Directory.List(ctx) {
			if err == nil && rec.Key == d.hide {
				continue
			}
			if !yield(rec, err) {
				return
			}
		}
	}
}

// A person missing from one directory listing (written while it ran) is not
// an orphan: with reconcile.orphans=remove the member must stay.
func TestPersonMissedByTheListingIsNotAnOrphan(t *testing.T) {
	h := setupDrift(t)
	ctx := context.Background()
	h.pol.Reconcile.MaxRemovals = 100
	h.pol.Reconcile.MaxRemovalRatio = 1
	jane := events.Person{Email: "jane.doe@acme.test"}
	opts := h.opts
	opts.Directory = hidingDirectory{Directory: h.records.Directory, hide: jane.Key()}
	rec, err := reconcile.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != state.RunApplied {
		t.Fatalf("status = %s, want applied", sum.Status)
	}
	if h.member("jane.doe@acme.test") == nil {
		t.Fatal("jane.doe, in the directory but missed by the listing, was removed as an orphan")
	}
	if h.member("hand.added@acme.test") != nil {
		t.Error("the real orphan hand.added was not removed")
	}
	noted := false
	for _, r := range sum.Reports {
		if r.Email == "jane.doe@acme.test" && r.PersonKey == jane.Key() {
			noted = true
		}
	}
	if !noted {
		t.Errorf("no report names jane.doe's deferred planning: %+v", sum.Reports)
	}
}

// An orphan in a stored plan who joins the directory before the approval is
// not removed: the removal is re-checked against the email link.
func TestApprovalSkipsAnOrphanNowInTheDirectory(t *testing.T) {
	h := setupDrift(t)
	ctx := context.Background()
	sum, err := h.rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != state.RunHalted {
		t.Fatalf("status = %s, want halted", sum.Status)
	}
	h.person(t, "hand.added@acme.test", events.Active, "")
	app, err := h.rec.Approve(ctx, sum.RunID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if h.member("hand.added@acme.test") == nil {
		t.Fatal("hand.added, in the directory since the plan was stored, was removed as an orphan")
	}
	if h.member("missed.leaver@acme.test") != nil {
		t.Error("the stored leaver removal was not applied")
	}
	if !strings.Contains(strings.Join(app.Errors, "\n"), "no longer an orphan") {
		t.Errorf("the skipped orphan removal was not reported: %+v", app)
	}
}

// TestApprovedChangesLinkToTheirRun: a run is a span; the approved plan,
// applied later, runs under a span that links to the run that planned it, so
// a reconcile change can be traced back to its run.
func TestApprovedChangesLinkToTheirRun(t *testing.T) {
	h := setupDrift(t)
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	o := h.opts
	o.TracerProvider = tp
	rec, err := reconcile.New(o)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := rec.Run(ctx, reconcile.RunOptions{})
	if err != nil || sum.Status != state.RunHalted {
		t.Fatalf("run: %+v %v", sum, err)
	}
	if _, err := rec.Approve(ctx, sum.RunID, "alice"); err != nil {
		t.Fatal(err)
	}
	var run, applied tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case "reconcile.run":
			run = s
		case "reconcile.apply_approved":
			applied = s
		}
	}
	if !run.SpanContext.IsValid() || !applied.SpanContext.IsValid() {
		t.Fatalf("spans: run %v, apply %v", run.Name, applied.Name)
	}
	if len(applied.Links) != 1 || applied.Links[0].SpanContext.SpanID() != run.SpanContext.SpanID() ||
		applied.Links[0].SpanContext.TraceID() != run.SpanContext.TraceID() {
		t.Fatalf("apply links %+v, want the run span %s", applied.Links, run.SpanContext.SpanID())
	}
	if !slices.ContainsFunc(run.Attributes, func(kv attribute.KeyValue) bool {
		return kv.Key == "jml.run_id" && kv.Value.AsString() == sum.RunID
	}) {
		t.Errorf("run span attributes %v lack the run id", run.Attributes)
	}
}
