package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Sentry is what the reconciler needs from the Sentry client.
type Sentry interface {
	converge.Sentry
	ListMembers(ctx context.Context, query string) iter.Seq2[sentry.Member, error]
	TeamMembers(ctx context.Context, slug string) iter.Seq2[sentry.Member, error]
	TeamProjects(ctx context.Context, slug string) iter.Seq2[sentry.Project, error]
	ListProjects(ctx context.Context) iter.Seq2[sentry.Project, error]
	CreateTeam(ctx context.Context, slug, name string) (*sentry.Team, error)
	AddProjectTeam(ctx context.Context, projectSlug, teamSlug string) error
	RemoveProjectTeam(ctx context.Context, projectSlug, teamSlug string) error
}

var _ Sentry = (*sentry.Client)(nil)

// Directory is what the reconciler reads of desired state.
type Directory interface {
	Get(ctx context.Context, key string) (state.PersonRecord, error)
	List(ctx context.Context) iter.Seq2[state.PersonRecord, error]
	Resolve(ctx context.Context, source, sourceID string) (string, error)
}

// Options wire a Reconciler.
type Options struct {
	Sentry Sentry
	// Converger plans and applies per person. Every change passes the safety
	// gate like an event's: nothing is sent while paused, and removals are
	// counted in the brakes' window and held while they are halted (reconcile's
	// own brakes, max_removals and max_removal_ratio, halt a run as a whole).
	Converger *converge.Converger
	Directory Directory
	Runs      state.Runs
	Evidence  state.EvidenceLog // optional: brake and approval records
	// Tokens, when set, is the converger's token-creator index; each run
	// rebuilds it from what it read, so a leaver's tokens cost no audit-log call.
	Tokens *converge.TokenIndex
	// Leases, when set, serialise runs fleet-wide and take each person's lease
	// (the same keys the event worker uses) around their changes.
	Leases   state.Leaser
	Owner    string
	LeaseTTL time.Duration // default 30s
	Policy   func() policy.Policy
	// The daemon's own member: never an orphan, never changed.
	SelfMemberID string
	SelfEmail    string
	// HaltTTL is how long a halted plan waits for an approval (default 24h).
	HaltTTL time.Duration
	// RunLeaseTTL bounds how long a crashed run blocks the next one; the lease
	// is renewed while the run is alive (default 10s).
	RunLeaseTTL time.Duration
	// Concurrency bounds parallel reads and changes (default 16).
	Concurrency int
	// Alert raises an operator alert (optional; halts are logged either way).
	Alert  func(ctx context.Context, kind, summary string)
	Logger *slog.Logger
	Meter  metric.MeterProvider
	// TracerProvider traces runs: a run's changes are under its span, and an
	// approved plan applied later links to the span of the run that planned it.
	TracerProvider trace.TracerProvider
	Now            func() time.Time
	// Target is recorded in evidence ("sandbox" or "sentry").
	Target string
}

// Reconciler runs full reconciles and the organization-wide jobs.
type Reconciler struct {
	o        Options
	m        metrics
	progress *progressState
	invites  *inviteMemory
}

// ErrBusy: another reconcile run holds the fleet-wide run lease.
var ErrBusy = errors.New("reconcile: another run is in progress")

// New validates o.
func New(o Options) (*Reconciler, error) {
	switch {
	case o.Sentry == nil:
		return nil, errors.New("reconcile: Sentry is required")
	case o.Converger == nil:
		return nil, errors.New("reconcile: Converger is required")
	case o.Directory == nil:
		return nil, errors.New("reconcile: Directory is required")
	case o.Runs == nil:
		return nil, errors.New("reconcile: Runs is required")
	}
	if o.Policy == nil {
		def := policy.Default()
		o.Policy = func() policy.Policy { return def }
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.RunLeaseTTL <= 0 {
		o.RunLeaseTTL = 10 * time.Second
	}
	if o.HaltTTL <= 0 {
		o.HaltTTL = 24 * time.Hour
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = otel.GetMeterProvider()
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Target == "" {
		o.Target = state.TargetSentry
	}
	if o.Owner == "" {
		o.Owner = "reconcile-" + randomHex(4)
	}
	m, err := newMetrics(o.Meter)
	if err != nil {
		return nil, err
	}
	return &Reconciler{o: o, m: m, progress: &progressState{}, invites: newInviteMemory()}, nil
}

// RunOptions select what one run does.
type RunOptions struct {
	DryRun bool
	// Progress, when set, is called as each phase advances (the CLI's bar).
	Progress func(Progress)
	// Trigger is recorded with the run ("schedule", "operator", "bench").
	Trigger string
	// RunID, when set, names the run (an operator request that returns before
	// the run ends); otherwise one is generated.
	RunID string
	// Policy, when set, previews a policy that is not in force (`jml plan
	// --policy new.yaml --all`): the run is a dry run whatever DryRun says.
	Policy *policy.Policy
}

// Counts are the changes of a run by kind.
type Counts struct {
	Remove int `json:"remove"` // members removed and invites deleted
	Invite int `json:"invite"`
	Update int `json:"update"` // org roles, teams, team roles, team structure, revoked tokens
	Report int `json:"report"` // findings reported without a change
}

// Summary is what `jml reconcile --json` prints.
type Summary struct {
	RunID     string         `json:"run_id"`
	Status    string         `json:"status"` // planned | applied | halted | approved | expired
	DryRun    bool           `json:"dry_run"`
	Trigger   string         `json:"trigger,omitempty"`
	Counts    Counts         `json:"counts"`
	Classes   map[string]int `json:"classes"` // linked, missing, orphan, disputed, unresolved, protected
	Members   int            `json:"members"`
	People    int            `json:"people"`
	Halted    string         `json:"halted,omitempty"` // why the brakes halted the run
	ExpiresAt *time.Time     `json:"expires_at,omitempty"`
	Applied   int            `json:"applied"` // steps done (or already done)
	Held      int            `json:"held"`    // steps the safety gate held (pause, brakes): the next run retries them
	Skipped   int            `json:"skipped"` // stored steps no longer needed at approval
	Failed    int            `json:"failed"`  // steps that failed
	Errors    []string       `json:"errors,omitempty"`
	Reports   []Report       `json:"reports,omitempty"` // first MaxReports findings
	Seconds   float64        `json:"seconds"`
	StartedAt time.Time      `json:"started_at"`
}

// MaxReports bounds the findings a Summary lists (all are in the stored plan).
const MaxReports = 200

// NewRunID returns a fresh run id.
func (r *Reconciler) NewRunID() string {
	return "rc-" + r.o.Now().UTC().Format("20060102T150405Z") + "-" + randomHex(3)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lockRun takes a fleet-wide lease and renews it while the run is alive, so a
// crashed run blocks the next one for at most RunLeaseTTL. The returned
// context carries the lease check, so organization-wide changes (team
// structure, token revocations) pass the safety gate under it; person
// changes take the person's lease on top. release is a no-op without Leases.
func (r *Reconciler) lockRun(ctx context.Context, key string) (context.Context, func(), error) {
	if r.o.Leases == nil {
		return ctx, func() {}, nil
	}
	ttl := r.o.RunLeaseTTL
	l, err := r.o.Leases.Acquire(ctx, key, r.o.Owner, ttl)
	if errors.Is(err, state.ErrLeaseHeld) {
		return ctx, nil, ErrBusy
	}
	if err != nil {
		return ctx, nil, fmt.Errorf("reconcile lease: %w", err)
	}
	var mu sync.Mutex
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				mu.Lock()
				cur := l
				mu.Unlock()
				if nl, err := r.o.Leases.Renew(ctx, cur, ttl); err == nil {
					mu.Lock()
					l = nl
					mu.Unlock()
				}
			}
		}
	}()
	held := func() state.Lease {
		mu.Lock()
		defer mu.Unlock()
		return l
	}
	lctx := sentry.WithPreSend(ctx, func(ctx context.Context) error { return r.o.Leases.Check(ctx, held()) })
	return lctx, func() {
		close(stop)
		<-done
		_ = r.o.Leases.Release(context.WithoutCancel(ctx), held())
	}, nil
}

// Run reads the organization and the directory, plans, and (unless DryRun or
// halted by the brakes) applies the plan. The run is stored in Runs.
func (r *Reconciler) Run(ctx context.Context, ro RunOptions) (sum Summary, err error) {
	ctx = sentry.WithPriority(ctx, sentry.PriorityReconcile)
	ctx, release, err := r.lockRun(ctx, "reconcile:run")
	if err != nil {
		return Summary{}, err
	}
	defer release()
	start := r.o.Now()
	sum = Summary{RunID: ro.RunID, DryRun: ro.DryRun, Trigger: ro.Trigger, StartedAt: start.UTC()}
	if sum.RunID == "" {
		sum.RunID = r.NewRunID()
	}
	ctx, span := r.tracer().Start(ctx, "reconcile.run", trace.WithAttributes(attribute.String("jml.run_id", sum.RunID),
		attribute.String("jml.trigger", ro.Trigger), attribute.Bool("jml.dry_run", ro.DryRun)))
	defer func() {
		span.SetAttributes(attribute.String("jml.run_status", sum.Status))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	// Every evidence record of this run names it as its trigger.
	ctx = state.WithTrigger(ctx, state.Trigger{Source: "reconcile", RunID: sum.RunID})
	prog := r.progress.start(ctx, sum.RunID, ro.Progress, r.m)
	defer prog.finish()
	pol := r.o.Policy()
	if ro.Policy != nil {
		pol, ro.DryRun, sum.DryRun = *ro.Policy, true, true
	}

	org, err := r.read(ctx, prog)
	if err != nil {
		r.m.runs.Add(ctx, 1, metric.WithAttributes(statusAttr("error")))
		return sum, err
	}
	pl, err := r.plan(ctx, org, pol, prog)
	if pl != nil {
		pl.Owner, pl.Trigger = r.o.Owner, ro.Trigger
		tc := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, tc)
		pl.Trace = tc
	}
	if err != nil {
		r.m.runs.Add(ctx, 1, metric.WithAttributes(statusAttr("error")))
		return sum, err
	}
	org = nil // the plan holds what apply needs; let the rest go
	sum.Counts, sum.Classes, sum.Members, sum.People = pl.Counts, pl.Classes, pl.Members, pl.People
	sum.Reports = firstReports(pl.Reports)
	run := state.ReconcileRun{ID: sum.RunID, StartedAt: start.UTC(), Counts: countsMap(pl), Trigger: ro.Trigger}

	removals := pl.Counts.Remove
	if why := brakeReason(removals, pl.Members, pol.Reconcile); why != "" && !ro.DryRun {
		sum.Status, sum.Halted = state.RunHalted, why
		exp := r.o.Now().Add(r.o.HaltTTL).UTC()
		sum.ExpiresAt = &exp
		run.Status, run.ExpiresAt, run.Reason = state.RunHalted, exp, why
		if run.Plan, err = encodePlan(pl); err != nil {
			return sum, err
		}
		run.FinishedAt = r.o.Now().UTC()
		if err := r.o.Runs.Put(ctx, run); err != nil {
			return sum, fmt.Errorf("store halted run: %w", err)
		}
		err := r.halted(ctx, sum, pl)
		sum.Seconds = r.o.Now().Sub(start).Seconds()
		return sum, err
	}
	if ro.DryRun {
		if why := brakeReason(removals, pl.Members, pol.Reconcile); why != "" {
			sum.Halted = "applying this plan would halt at the brakes: " + why
		}
		sum.Status, run.Status = state.RunPlanned, state.RunPlanned
		if run.Plan, err = encodePlan(pl); err != nil {
			return sum, err
		}
		run.FinishedAt = r.o.Now().UTC()
		if err := r.o.Runs.Put(ctx, run); err != nil {
			return sum, fmt.Errorf("store run: %w", err)
		}
		r.m.runs.Add(ctx, 1, metric.WithAttributes(statusAttr(state.RunPlanned)))
		sum.Seconds = r.o.Now().Sub(start).Seconds()
		return sum, nil
	}
	res := r.apply(ctx, pl, pol, prog, false)
	sum.Applied, sum.Held, sum.Skipped, sum.Failed, sum.Errors = res.applied, res.held, res.skipped, res.failed, res.errors
	sum.Status, run.Status = state.RunApplied, state.RunApplied
	if run.Plan, err = encodePlan(pl); err != nil {
		return sum, err
	}
	run.FinishedAt = r.o.Now().UTC()
	if err := r.o.Runs.Put(ctx, run); err != nil {
		return sum, fmt.Errorf("store run: %w", err)
	}
	r.m.runs.Add(ctx, 1, metric.WithAttributes(statusAttr(state.RunApplied)))
	sum.Seconds = r.o.Now().Sub(start).Seconds()
	r.o.Logger.InfoContext(ctx, "reconcile run finished", "run_id", sum.RunID, "members", sum.Members, "people", sum.People,
		"remove", sum.Counts.Remove, "invite", sum.Counts.Invite, "update", sum.Counts.Update, "report", sum.Counts.Report,
		"applied", sum.Applied, "held", sum.Held, "failed", sum.Failed, "seconds", sum.Seconds)
	return sum, nil
}

// brakeReason says why a run removing removals of members must halt ("" = it
// may proceed): more than max_removals, or more than max_removal_ratio of the
// members. Exactly at a limit proceeds.
func brakeReason(removals, members int, rc policy.Reconcile) string {
	if removals == 0 {
		return ""
	}
	if rc.MaxRemovals >= 0 && removals > rc.MaxRemovals {
		return fmt.Sprintf("%d removals exceed reconcile.max_removals=%d", removals, rc.MaxRemovals)
	}
	if members > 0 && rc.MaxRemovalRatio > 0 && float64(removals) > rc.MaxRemovalRatio*float64(members) {
		return fmt.Sprintf("%d removals of %d members exceed reconcile.max_removal_ratio=%g", removals, members, rc.MaxRemovalRatio)
	}
	return ""
}

func (r *Reconciler) halted(ctx context.Context, sum Summary, pl *Plan) error {
	r.m.runs.Add(ctx, 1, metric.WithAttributes(statusAttr(state.RunHalted)))
	r.m.halts.Add(ctx, 1)
	msg := fmt.Sprintf("reconcile run %s halted: %s; review it and run `jml approve %s` before %s",
		sum.RunID, sum.Halted, sum.RunID, sum.ExpiresAt.Format(time.RFC3339))
	r.o.Logger.WarnContext(ctx, "reconcile halted by the brakes", "run_id", sum.RunID, "reason", sum.Halted,
		"remove", sum.Counts.Remove, "members", sum.Members, "expires_at", sum.ExpiresAt)
	if r.o.Alert != nil {
		r.o.Alert(ctx, "reconcile_halted", msg)
	}
	if r.o.Evidence == nil {
		return nil
	}
	plan, _ := encodeJSON(map[string]any{"run_id": sum.RunID, "reason": sum.Halted, "counts": sum.Counts, "members": sum.Members})
	return r.recordEvidence(ctx, state.Evidence{Kind: state.EvidenceBrake, Target: r.o.Target, Plan: plan, Outcome: state.RunHalted})
}

// recordEvidence appends an evidence record, retrying a failed write for up to
// half a minute; a record that cannot be written fails the caller (and is
// logged in full): never dropped silently.
func (r *Reconciler) recordEvidence(ctx context.Context, e state.Evidence) error {
	wctx := context.WithoutCancel(ctx)
	delay := 100 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := r.o.Evidence.Append(wctx, e)
		if err == nil {
			return nil
		}
		if time.Now().Add(delay).After(deadline) {
			r.o.Logger.ErrorContext(ctx, "evidence record not written after retries", "kind", e.Kind, "err", err, "plan", string(e.Plan))
			return fmt.Errorf("evidence record (%s) not written: %w", e.Kind, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 2*time.Second)
	}
}

func firstReports(rs []Report) []Report {
	if len(rs) > MaxReports {
		return rs[:MaxReports]
	}
	return rs
}

func countsMap(pl *Plan) map[string]int {
	m := map[string]int{"remove": pl.Counts.Remove, "invite": pl.Counts.Invite, "update": pl.Counts.Update,
		"report": pl.Counts.Report, "members": pl.Members, "people": pl.People}
	for k, v := range pl.Classes {
		m["class_"+k] = v
	}
	return m
}

// SelfMemberID is the daemon's own member id.
func (r *Reconciler) SelfMemberID() string { return r.o.SelfMemberID }

// SelfEmail is the daemon's own email.
func (r *Reconciler) SelfEmail() string { return r.o.SelfEmail }

func (r *Reconciler) tracer() trace.Tracer {
	return r.o.TracerProvider.Tracer("github.com/sentry-jml/sentry-jml/internal/handlers/reconcile")
}
