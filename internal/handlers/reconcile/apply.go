package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

type applyResult struct {
	mu      sync.Mutex
	applied int
	held    int // held by the safety gate (pause, brakes)
	skipped int
	failed  int
	errors  []string
}

func (a *applyResult) record(steps []converge.Step, planned int, ctxErr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range steps {
		switch {
		case strings.HasPrefix(s.Result, "error"):
			a.failed++
			if len(a.errors) < 50 {
				a.errors = append(a.errors, fmt.Sprintf("%s %s%s: %s", s.Action, s.Email, s.Team, s.Result))
			}
		case strings.HasPrefix(s.Result, "skipped"):
			a.skipped++
		case strings.HasPrefix(s.Result, "held"):
			a.held++
		default:
			a.applied++
		}
	}
	if missing := planned - len(steps); missing > 0 && ctxErr != "" {
		a.failed += missing
		if len(a.errors) < 50 {
			a.errors = append(a.errors, ctxErr)
		}
	}
}

func (a *applyResult) skip(n int, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.skipped += n
	if why != "" && len(a.errors) < 50 {
		a.errors = append(a.errors, "skipped: "+why)
	}
}

// apply carries out a plan. With recheck (an approval of a stored plan) every
// stored step is re-checked against Sentry and the directory as they are now
// and applied only if a fresh plan for that person still contains it; steps
// not in the stored plan are never applied.
func (r *Reconciler) apply(ctx context.Context, pl *Plan, pol policy.Policy, prog *progress, recheck bool) *applyResult {
	res := &applyResult{}
	prog.total(phaseApply, len(pl.Items)+len(pl.Org))
	var teams func(string) converge.TeamInfo
	if recheck {
		known := map[string]converge.TeamInfo{}
		for t, err := range r.o.Sentry.ListTeams(ctx, "") {
			if err != nil {
				res.skip(0, "")
				res.errors = append(res.errors, "list teams: "+err.Error())
				res.failed += len(pl.Items) + len(pl.Org)
				return res
			}
			known[t.Slug] = converge.TeamInfo{Exists: true, IdP: t.IdPProvisioned()}
		}
		teams = func(slug string) converge.TeamInfo { return known[slug] }
	}
	_ = parallel(ctx, r.o.Concurrency, len(pl.Items), func(ctx context.Context, i int) error {
		r.applyItem(ctx, &pl.Items[i], teams, recheck, res)
		prog.add(phaseApply, 1)
		return nil
	})
	var liveTokens map[string]bool
	for _, s := range pl.Org {
		if ctx.Err() != nil {
			res.record(nil, 1, "cancelled: "+ctx.Err().Error())
			continue
		}
		if recheck {
			if why := r.recheckOrg(ctx, s, &liveTokens); why != "" {
				res.skip(1, s.Action+" "+s.Team+s.Token+": "+why)
				prog.add(phaseApply, 1)
				continue
			}
		}
		s.Result = r.applyOrgStep(ctx, s)
		s.At = r.o.Now().UTC().Format(time.RFC3339Nano)
		r.m.changes.Add(ctx, 1, metric.WithAttributes(attribute.String("action", s.Action), attribute.String("result", resultKind(s.Result))))
		res.record([]converge.Step{s.Step}, 1, "")
		prog.add(phaseApply, 1)
	}
	return res
}

// errResult is a step's result for err: "held: …" when the safety gate held
// the change (pause, brakes), "error: …" otherwise.
func errResult(err error) string {
	if rf, ok := sentry.RefusalOf(err); ok && rf.Kind != sentry.RefusedLease && rf.Kind != sentry.RefusedNoGate {
		return "held: " + rf.Reason
	}
	return "error: " + err.Error()
}

func resultKind(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[:i]
	}
	return s
}

func (r *Reconciler) recheckOrg(ctx context.Context, s PlannedStep, live *map[string]bool) string {
	switch s.Action {
	case ActCreateTeam:
		if _, err := r.o.Sentry.GetTeam(ctx, s.Team); err == nil {
			return "the team exists now"
		}
	case converge.ActRevokeToken:
		if *live == nil {
			ts, err := r.o.Sentry.ListOrgAuthTokens(ctx)
			if err != nil {
				return "cannot list tokens: " + err.Error()
			}
			*live = map[string]bool{}
			for _, t := range ts {
				(*live)[t.ID] = true
			}
		}
		if !(*live)[s.TokenID] {
			return "the token is gone"
		}
	}
	return ""
}

// personLease takes the person's lease (the event worker's key), so reconcile
// and event convergence never change one person at once.
func (r *Reconciler) personLease(ctx context.Context, key string) (func(), converge.LeaseCheck, error) {
	if r.o.Leases == nil {
		return func() {}, nil, nil
	}
	l, err := r.o.Leases.Acquire(ctx, converge.LeaseKey(key), r.o.Owner, r.o.LeaseTTL)
	if err != nil {
		return nil, nil, err
	}
	release := func() { _ = r.o.Leases.Release(context.WithoutCancel(ctx), l) }
	return release, func(ctx context.Context) error { return r.o.Leases.Check(ctx, l) }, nil
}

func stepKey(s converge.Step) string {
	return strings.Join([]string{s.Action, s.MemberID, s.Team, s.Role, s.TokenID, s.Via}, "|")
}

func (r *Reconciler) applyItem(ctx context.Context, it *Item, teams func(string) converge.TeamInfo, recheck bool, res *applyResult) {
	release, check, err := r.personLease(ctx, it.PersonKey)
	if errors.Is(err, state.ErrLeaseHeld) {
		res.skip(len(it.Steps), it.Email+": person busy (an event is being converged); the next run retries")
		return
	}
	if err != nil {
		res.record(nil, len(it.Steps), it.Email+": lease: "+err.Error())
		return
	}
	defer release()
	rec, err := r.record(ctx, it)
	if err != nil {
		res.record(nil, len(it.Steps), it.Email+": "+err.Error())
		return
	}
	steps := make([]converge.Step, 0, len(it.Steps))
	for _, ps := range it.Steps {
		steps = append(steps, ps.step())
	}
	member := it.Member
	// An orphan removal is always re-checked against the directory, stored
	// plan or not: a person may have been created since the plan was made.
	if it.Class == ClassOrphan {
		if key := r.linkedPerson(ctx, it.Email); key != "" {
			res.skip(len(it.Steps), it.Email+": no longer an orphan (now in the directory as "+key+")")
			return
		}
	}
	if recheck {
		var why string
		steps, member, why = r.recheckItem(ctx, it, rec, steps, teams)
		if skipped := len(it.Steps) - len(steps); skipped > 0 {
			res.skip(skipped, it.Email+": "+why)
		}
		if len(steps) == 0 {
			return
		}
	}
	out, err := r.o.Converger.ApplyPlanned(ctx, rec, member, steps, check)
	msg := ""
	switch {
	case err == nil && out.Held != "" && out.RequeueAfter > 0:
		// Held by the safety gate: the held step is in out.Steps; the steps
		// after it were not attempted and wait for the next run.
		if n := len(out.Steps); n < len(steps) {
			res.mu.Lock()
			res.held += len(steps) - n
			res.mu.Unlock()
			steps = steps[:n]
		}
	case err != nil:
		msg = it.Email + ": " + err.Error()
	}
	for _, s := range out.Steps {
		r.m.changes.Add(ctx, 1, metric.WithAttributes(attribute.String("action", s.Action), attribute.String("result", resultKind(s.Result))))
	}
	planned := len(steps)
	// Token steps follow a removal: they are extra, not planned.
	res.record(out.Steps, planned, msg)
	if out.Outcome == converge.OutcomeNeedsHuman {
		res.mu.Lock()
		res.failed++
		res.errors = append(res.errors, it.Email+": needs a human: "+out.Reason)
		res.mu.Unlock()
	}
}

// record returns the person's directory record (a synthetic leaver for an orphan).
func (r *Reconciler) record(ctx context.Context, it *Item) (state.PersonRecord, error) {
	if it.Class == ClassOrphan {
		return orphanRecord(it.Email), nil
	}
	rec, err := r.o.Directory.Get(ctx, it.PersonKey)
	if err != nil {
		return state.PersonRecord{}, fmt.Errorf("directory: %w", err)
	}
	return rec, nil
}

// recheckItem keeps the stored steps a fresh plan still contains.
func (r *Reconciler) recheckItem(ctx context.Context, it *Item, rec state.PersonRecord, steps []converge.Step, teams func(string) converge.TeamInfo) ([]converge.Step, *sentry.Member, string) {
	var member *sentry.Member
	if it.MemberID != "" {
		m, err := r.o.Sentry.GetMember(ctx, it.MemberID)
		switch {
		case isNotFound(err):
			return nil, nil, "member " + it.MemberID + " is gone"
		case err != nil:
			return nil, nil, "cannot re-read member " + it.MemberID + ": " + err.Error()
		case !converge.MatchesEmail(m, it.Email):
			return nil, nil, "member " + it.MemberID + " no longer has this email"
		}
		member = m
	} else {
		ms, err := r.o.Sentry.FindMembersByEmail(ctx, it.Email)
		if err != nil {
			return nil, nil, "cannot search members: " + err.Error()
		}
		if len(ms) > 0 {
			return nil, nil, "a member or invite exists now"
		}
	}
	restore, err := r.o.Converger.RehireRestore(ctx, rec, member)
	if err != nil {
		restore = nil // its stored steps are skipped as no longer needed
	}
	fresh := r.o.Converger.PlanMemberWith(rec, member, teams, restore)
	want := map[string]bool{}
	for _, s := range fresh.Steps {
		want[stepKey(s)] = true
	}
	var keep []converge.Step
	for _, s := range steps {
		if want[stepKey(s)] {
			keep = append(keep, s)
		}
	}
	why := ""
	if len(keep) < len(steps) {
		why = "stored step(s) no longer needed"
	}
	return keep, member, why
}

// Approve approves a halted run (compare-and-set: one approver wins) and
// applies exactly its stored plan, re-checking each step first.
func (r *Reconciler) Approve(ctx context.Context, id, by string) (Summary, error) {
	if _, err := r.o.Runs.Approve(ctx, id, by, r.o.Now()); err != nil {
		return Summary{RunID: id}, err
	}
	return r.ApplyApproved(ctx, id)
}

// ErrNotApproved: ApplyApproved was asked to apply a run that is not approved
// (or was applied already).
var ErrNotApproved = errors.New("reconcile: run is not approved")

// ApplyApproved applies an approved run's stored plan, once.
func (r *Reconciler) ApplyApproved(ctx context.Context, id string) (Summary, error) {
	ctx = sentry.WithPriority(ctx, sentry.PriorityReconcile)
	// The operator approved this plan's removals by number: they are not
	// counted in the brakes' window, but halted brakes and a pause still hold them.
	ctx = safety.WithApproved(ctx, id)
	ctx = state.WithTrigger(ctx, state.Trigger{Source: "reconcile", RunID: id})
	ctx, release, err := r.lockRun(ctx, "reconcile:apply:"+id)
	if err != nil {
		return Summary{RunID: id}, err
	}
	defer release()
	run, err := r.o.Runs.Get(ctx, id)
	if err != nil {
		return Summary{RunID: id}, err
	}
	if run.Status != state.RunApproved {
		return Summary{RunID: id, Status: run.Status}, fmt.Errorf("run %s is %s: %w", id, run.Status, ErrNotApproved)
	}
	pl, err := DecodePlan(run.Plan)
	if err != nil {
		return Summary{RunID: id}, err
	}
	start := r.o.Now()
	// The changes of an approved plan run under a span of their own that
	// links to the run that planned them (perhaps hours earlier, elsewhere).
	opts := []trace.SpanStartOption{trace.WithAttributes(attribute.String("jml.run_id", id), attribute.String("jml.approved_by", run.ApprovedBy))}
	if sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(pl.Trace))); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("jml.link", "planned_by")}}))
	}
	ctx, span := r.tracer().Start(ctx, "reconcile.apply_approved", opts...)
	defer span.End()
	prog := r.progress.start(ctx, id, nil, r.m)
	defer prog.finish()
	res := r.apply(ctx, pl, r.o.Policy(), prog, true)
	sum := Summary{RunID: id, Status: state.RunApplied, Trigger: "approval", Counts: pl.Counts, Classes: pl.Classes,
		Members: pl.Members, People: pl.People, Applied: res.applied, Held: res.held, Skipped: res.skipped, Failed: res.failed, Errors: res.errors,
		StartedAt: start.UTC()}
	run.Status, run.FinishedAt = state.RunApplied, r.o.Now().UTC()
	if run.Counts == nil {
		run.Counts = map[string]int{}
	}
	run.Counts["applied"], run.Counts["held"], run.Counts["skipped"], run.Counts["failed"] = res.applied, res.held, res.skipped, res.failed
	if err := r.o.Runs.Put(ctx, run); err != nil {
		return sum, fmt.Errorf("store run %s: %w", id, err)
	}
	if r.o.Evidence != nil {
		plan, _ := encodeJSON(map[string]any{"run_id": id, "approved_by": run.ApprovedBy, "approved_at": run.ApprovedAt,
			"applied": res.applied, "held": res.held, "skipped": res.skipped, "failed": res.failed})
		if err := r.recordEvidence(ctx, state.Evidence{Kind: state.EvidenceApproval, Target: r.o.Target, Plan: plan,
			Outcome: state.RunApplied}); err != nil {
			return sum, err
		}
	}
	r.m.runs.Add(ctx, 1, metric.WithAttributes(statusAttr("approved_applied")))
	sum.Seconds = r.o.Now().Sub(start).Seconds()
	r.o.Logger.InfoContext(ctx, "approved reconcile run applied", "run_id", id, "approved_by", run.ApprovedBy,
		"applied", res.applied, "skipped", res.skipped, "failed", res.failed)
	return sum, nil
}

// ApplyApprovedRuns applies every approved, not yet applied run (an approval
// made through `jml approve RUN_ID` on any replica). It is a scheduled job.
func (r *Reconciler) ApplyApprovedRuns(ctx context.Context) error {
	var ids []string
	for run, err := range r.o.Runs.List(ctx) {
		if err != nil {
			return err
		}
		if run.Status == state.RunApproved {
			ids = append(ids, run.ID)
		}
	}
	for _, id := range ids {
		if _, err := r.ApplyApproved(ctx, id); err != nil && !errors.Is(err, ErrBusy) && !errors.Is(err, ErrNotApproved) {
			return err
		}
	}
	return nil
}
