package app

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/alert"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/follow"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// WorkerOptions are the worker's dependencies.
type WorkerOptions struct {
	NC        *nats.Conn
	Coord     state.Coordinator
	Sentry    *sentry.Client
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	Owner     string
	// Policy returns the current policy (reloadable).
	Policy func() policy.Policy
	// Target is "sandbox" or "sentry" (recorded in evidence).
	Target  string
	Streams events.StreamOptions
	Ready   *Readiness
	// MaxClockSkew bounds a roster's as-of time ahead of the clock, and the
	// versions the directory keeps (JML_MAX_CLOCK_SKEW; 0 means 5 minutes).
	MaxClockSkew time.Duration
	// IDSpaces says which sources share the generic source's and the
	// roster's id space (JML_SHARED_ID_SPACE; zero value: those two).
	IDSpaces state.IDSpaces
	// TokenCheckInterval is how often the scheduler re-checks the Sentry token (default 30s).
	TokenCheckInterval time.Duration
	// IndexInterval is how often the member and token indexes are rebuilt (default 10m).
	IndexInterval time.Duration
	// SourceAPIs give provider API access per source (thin payloads, unsigned
	// sources): JML_SOURCE_<NAME>_API_URL / _API_TOKEN.
	SourceAPIs map[string]resolve.Config
	// Alerts receives operator alerts (nil = log only).
	Alerts *alert.Notifier
	// OktaCatchUp, when set (Okta hook and API configured), replays System Log
	// events the hook missed: Okta retries a failed delivery only once.
	OktaCatchUp *okta.Source
	// Gate is the safety gate the Sentry client was built with (NewSafety);
	// Run keeps it watching the switches and heartbeating. Required.
	Gate *safety.Gate
	// EvidenceKey signs the evidence chain's head (anchors, exports); nil
	// disables anchoring and export (cmd/* refuses that in production).
	EvidenceKey ed25519.PrivateKey
	// EvidenceAnchorEvery is how often the head is signed (default 5m).
	EvidenceAnchorEvery time.Duration
	// Sources are the event source names whose per-source series are
	// exported at zero from the start (jml_unresolved_events_total).
	Sources []string
	// AuditPoll is how often the audit-log follower reads Sentry's audit log
	// (JML_AUDIT_POLL); 0 disables the follower.
	AuditPoll time.Duration
}

// CheckSentry is the start-up check: token kind, the service user's membership,
// role and scopes. A missing scope fails start-up with one line.
func CheckSentry(ctx context.Context, c *sentry.Client) (*sentry.CheckResult, error) {
	r, err := c.Check(ctx)
	if err != nil {
		return nil, fmt.Errorf("sentry start-up check (org %s): %w", c.Org(), err)
	}
	return r, nil
}

// CheckSentryToken calls members/me and reports the service user's identity; a
// 401/403 means the token is not usable.
func CheckSentryToken(ctx context.Context, c *sentry.Client) (*sentry.Member, error) {
	me, err := c.Me(ctx)
	if err != nil {
		return nil, fmt.Errorf("sentry token check (GET /api/0/organizations/%s/members/me/): %w", c.Org(), err)
	}
	return me, nil
}

// Worker is a running worker: the consumer, the scheduler and the operator
// actions the admin API exposes.
type Worker struct {
	o       WorkerOptions
	js      jetstream.JetStream
	records *jsstate.Records
	gate    *safety.Gate
	conv    *converge.Converger
	worker  *worker.Worker
	members *converge.MemberIndex
	tokens  *converge.TokenIndex
	// unresolved lists events whose person could not be identified.
	unresolved *jsstate.UnresolvedList
	// metrics are the worker's own counters and job-fed gauges (metrics.go).
	metrics *workerMetrics
	// schedMu guards the reconcile job's id and the schedule it runs on.
	schedMu           sync.Mutex
	reconcileJobID    uuid.UUID
	reconcileSchedule string
	// recon is the reconciler and its job state (reconcile.go), built on first use.
	reconMu sync.Mutex
	recon   *reconcileService
	// jobs is the operator's long work running in this process (jobs.go).
	jobs *jobs
	// follower reads Sentry's audit log (follow.go); nil when off.
	follower *follow.Follower
}

// alert logs an operator alert and sends it to the configured sinks.
func (w *Worker) alert(ctx context.Context, kind, person, summary string) {
	notify(ctx, w.o.Alerts, w.o.Logger, kind, person, summary)
}

// IndexesWarm reports whether the member and token indexes have been built.
func (w *Worker) IndexesWarm() bool { return w.members.Len() > 0 && w.tokens.Warm() }

// Unresolved streams events whose person could not be identified.
func (w *Worker) Unresolved(ctx context.Context) iter.Seq2[jsstate.Unresolved, error] {
	return w.unresolved.List(ctx)
}

// NewWorker opens the streams and records, checks the Sentry token and builds
// the worker. Run starts it.
func NewWorker(ctx context.Context, o WorkerOptions) (*Worker, error) {
	if o.Policy == nil {
		def := policy.Default()
		o.Policy = func() policy.Policy { return def }
	}
	js, err := jetstream.New(o.NC)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := events.EnsureStreams(ctx, js, o.Streams); err != nil {
		return nil, err
	}
	jo := jsstate.Options{Replicas: o.Streams.Replicas, MaxClockSkew: o.MaxClockSkew}
	records, err := jsstate.Open(ctx, js, jo)
	if err != nil {
		return nil, err
	}
	if o.Gate == nil {
		return nil, errors.New("worker: the safety gate is required (app.NewSafety)")
	}
	check, err := CheckSentry(ctx, o.Sentry)
	// Sentry busy or briefly down (429, 5xx, timeouts) is no reason to exit:
	// wait and ask again. A refused token or missing scopes fail at once.
	for delay := time.Second; err != nil && sentry.IsTransient(err) && !errors.Is(err, sentry.ErrUnauthorized); delay = min(2*delay, 30*time.Second) {
		o.Logger.WarnContext(ctx, "sentry start-up check failed, retrying", "err", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		check, err = CheckSentry(ctx, o.Sentry)
	}
	if o.Ready != nil {
		o.Ready.SetSentry(err)
	}
	if err != nil {
		return nil, err
	}
	me := check.Member
	o.Logger.InfoContext(ctx, "sentry service user", "member_id", me.ID, "role", me.OrgRole, "org", o.Sentry.Org(),
		"scim", check.SCIMEnabled, "rate_limit_headers", check.RateLimitHeaders)
	for _, w := range check.Warnings {
		o.Logger.WarnContext(ctx, "sentry start-up check", "warning", w)
	}
	unresolved, err := jsstate.OpenUnresolved(ctx, js, jo)
	if err != nil {
		return nil, err
	}
	w := &Worker{o: o, js: js, records: records, gate: o.Gate, members: converge.NewMemberIndex(), tokens: converge.NewTokenIndex(),
		unresolved: unresolved, jobs: newJobs()}
	if w.metrics, err = newWorkerMetrics(o.Telemetry.MeterProvider, o.Policy); err != nil {
		return nil, fmt.Errorf("worker metrics: %w", err)
	}
	resolvers := resolve.BySource{}
	for name, cfg := range o.SourceAPIs {
		if cfg.BaseURL == "" && cfg.Token == "" {
			continue
		}
		r, err := providers.NewResolver(name, cfg)
		if err != nil {
			return nil, fmt.Errorf("JML_SOURCE_%s_API_URL: %w", upper(name), err)
		}
		resolvers[name] = r
	}
	w.conv, err = converge.New(converge.Options{
		Sentry: o.Sentry, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole, Policy: o.Policy,
		Snapshots: records.Snapshots, Evidence: countedLog{stampedLog{records.Evidence}, w.metrics}, Gate: o.Gate,
		Index: w.members, Tokens: w.tokens, Target: o.Target, Logger: o.Logger, TracerProvider: o.Telemetry.TracerProvider,
		Alert: w.alert, MeterProvider: o.Telemetry.MeterProvider,
	})
	if err != nil {
		return nil, err
	}
	if err := w.newFollower(ctx, me, jo); err != nil { // issue 18: the audit-log follower
		return nil, err
	}
	w.worker, err = worker.New(worker.Options{
		JS: js, Dedupe: o.Coord, Leases: o.Coord, Directory: records.Directory, Converger: w.conv, Due: records.Due, Owner: o.Owner,
		IDSpaces: o.IDSpaces, MaxClockSkew: o.MaxClockSkew,
		Resolver: resolvers, Unresolved: unresolvedSink{unresolved}, Alert: w.alert, Sources: o.Sources,
		ResolveErrors: struct{ NotConfigured, Unknown error }{resolve.ErrNotConfigured, resolve.ErrUnresolvable},
		Logger:        o.Logger, TracerProvider: o.Telemetry.TracerProvider, MeterProvider: o.Telemetry.MeterProvider,
		Propagator: o.Telemetry.Propagator,
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Run consumes and runs the scheduled jobs until ctx is cancelled.
func (w *Worker) Run(ctx context.Context) error {
	sched, err := w.newScheduler()
	if err != nil {
		return err
	}
	gctx, stopGate := context.WithCancel(ctx)
	gateDone := make(chan struct{})
	go func() {
		defer close(gateDone)
		_ = w.gate.Run(gctx)
	}()
	defer func() {
		stopGate()
		<-gateDone
	}()
	sched.Start()
	defer func() {
		if err := sched.Shutdown(); err != nil {
			w.o.Logger.Warn("scheduler shutdown", "err", err)
		}
	}()
	return w.worker.Run(ctx)
}

// jobLockTTL bounds how long a crashed replica blocks a fleet-wide job.
const jobLockTTL = 10 * time.Second

// jobParts wraps a job's task (errors logged) and gives its options:
// singleton per replica, the coordination store's lock for fleet-wide jobs.
func (w *Worker) jobParts(j schedJob) (gocron.Task, []gocron.JobOption) {
	opts := []gocron.JobOption{gocron.WithName(j.name), gocron.WithSingletonMode(gocron.LimitModeReschedule)}
	if !j.shared {
		opts = append(opts, gocron.WithDisabledDistributedJobLocker(true))
	}
	if j.name == "member-index" {
		opts = append(opts, gocron.WithStartAt(gocron.WithStartImmediately()))
	}
	task, name, log := j.task, j.name, w.o.Logger
	return gocron.NewTask(func(ctx context.Context) error {
		err := task(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.ErrorContext(ctx, "scheduled job failed", "job", name, "err", err)
		}
		return err
	}), opts
}

// followSchedule replaces the reconcile job when the policy's schedule changed
// (a SIGHUP reload).
func (w *Worker) followSchedule(ctx context.Context, s gocron.Scheduler) {
	w.schedMu.Lock()
	defer w.schedMu.Unlock()
	if w.reconcileJobID == uuid.Nil {
		return
	}
	if reconcileSchedule(w.o.Policy()) == w.reconcileSchedule {
		return // the common case, every 5 s: nothing to build
	}
	j, schedule, ok := w.reconcileJobFor(w.o.Policy().Reconcile.Schedule)
	if !ok {
		return
	}
	task, opts := w.jobParts(j)
	job, err := s.Update(w.reconcileJobID, j.def, task, opts...)
	if err != nil {
		w.o.Logger.ErrorContext(ctx, "reconcile schedule not changed; the previous one stays", "schedule", schedule, "err", err)
		return
	}
	w.o.Logger.InfoContext(ctx, "reconcile schedule changed", "from", w.reconcileSchedule, "to", schedule)
	w.reconcileJobID, w.reconcileSchedule = job.ID(), schedule
}

// newScheduler builds the gocron scheduler. Fleet-wide jobs (due changes) take
// the coordination store's lock so one replica runs each tick; per-replica jobs
// (the token check feeding this replica's /readyz, the local indexes) do not.
func (w *Worker) newScheduler() (gocron.Scheduler, error) {
	o := w.o
	interval := o.TokenCheckInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	indexEvery := o.IndexInterval
	if indexEvery <= 0 {
		indexEvery = 10 * time.Minute
	}
	s, err := gocron.NewScheduler(gocron.WithLocation(time.UTC), gocron.WithStopTimeout(20*time.Second),
		// The job lock is renewed while a job runs: its TTL is how long a
		// crashed replica holds fleet-wide jobs up.
		gocron.WithDistributedLocker(state.NewLocker(o.Coord, o.Owner, jobLockTTL)),
		gocron.WithGlobalJobOptions(gocron.WithEventListeners(gocron.AfterJobRunsWithPanic(func(_ uuid.UUID, name string, r any) {
			o.Logger.Error("scheduled job panicked", "job", name, "panic", fmt.Sprint(r))
		}))))
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	jobs := []schedJob{
		{"sentry-token-check", gocron.DurationJob(interval), w.tokenCheck, false},
		{"member-index", gocron.DurationJob(indexEvery), w.warmIndexes, false},
		{"due-changes", gocron.DurationJob(5 * time.Second), w.releaseDue, true},
		{"okta-catch-up", gocron.DurationJob(5 * time.Minute), w.oktaCatchUp, true},
	}
	jobs = append(jobs, w.evidenceJobs()...)  // evidence.go: the periodic anchor
	jobs = append(jobs, w.reconcileJobs()...) // reconcile.go: reconcile, approved runs, invites, token hygiene, roster
	jobs = append(jobs, w.followJobs()...)    // follow.go: the audit-log follower (leader only)
	for _, j := range jobs {
		task, opts := w.jobParts(j)
		job, err := s.NewJob(j.def, task, opts...)
		if err != nil {
			return nil, fmt.Errorf("scheduler job %s: %w", j.name, err)
		}
		if j.name == "reconcile" {
			w.schedMu.Lock()
			w.reconcileJobID = job.ID()
			w.schedMu.Unlock()
		}
	}
	// The reconcile schedule comes from the policy, which SIGHUP reloads:
	// a changed schedule replaces the job's definition within seconds.
	if _, err := s.NewJob(gocron.DurationJob(5*time.Second), gocron.NewTask(func(ctx context.Context) { w.followSchedule(ctx, s) }),
		gocron.WithName("reconcile-schedule"), gocron.WithSingletonMode(gocron.LimitModeReschedule), gocron.WithDisabledDistributedJobLocker(true)); err != nil {
		return nil, fmt.Errorf("scheduler job reconcile-schedule: %w", err)
	}
	return s, nil
}

func (w *Worker) tokenCheck(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := CheckSentryToken(ctx, w.o.Sentry)
	if errors.Is(err, context.Canceled) {
		return err
	}
	if w.o.Ready != nil {
		w.o.Ready.SetSentry(err)
	}
	if errors.Is(err, sentry.ErrUnauthorized) || errors.Is(err, sentry.ErrPermission) {
		w.alert(ctx, "token_rejected", "", "Sentry refuses JML_SENTRY_TOKEN: "+err.Error())
	}
	return err
}

// warmIndexes rebuilds the email → member index and the token-creator index, so
// a leaver costs a detail read and the removal (plus one call per token).
func (w *Worker) warmIndexes(ctx context.Context) error {
	ctx = sentry.WithPriority(ctx, sentry.PriorityReconcile)
	pending := 0
	n, err := w.members.Warm(ctx, countPending(w.o.Sentry.ListMembers(ctx, ""), &pending))
	if err != nil {
		return fmt.Errorf("member index: %w", err)
	}
	w.metrics.setInvites(pending)
	active, err := w.o.Sentry.ListOrgAuthTokens(ctx)
	if err != nil {
		return fmt.Errorf("token index: %w", err)
	}
	w.metrics.setTokens(active)
	if err := w.tokens.Build(ctx, w.o.Sentry.AuditLogs(ctx, sentry.AuditLogQuery{Event: "org-auth-token.create"}), active); err != nil {
		return fmt.Errorf("token index: %w", err)
	}
	w.o.Logger.InfoContext(ctx, "indexes warm", "emails", n, "org_tokens", len(active))
	return nil
}

// oktaCatchUp publishes the Okta System Log events since the last checkpoint
// (first run: the last hour). Events the hook delivered carry the same ids, so
// JetStream and the worker drop them as duplicates.
func (w *Worker) oktaCatchUp(ctx context.Context) error {
	if w.o.OktaCatchUp == nil {
		return nil
	}
	start := time.Now().UTC()
	since, err := w.gate.Control().Checkpoint(ctx, "okta")
	if err != nil {
		return err
	}
	if since.IsZero() {
		since = start.Add(-time.Hour)
	}
	parsed, err := w.o.OktaCatchUp.CatchUp(ctx, since)
	if err != nil {
		return err
	}
	pub := events.NewPublisher(w.js, w.o.Telemetry.TracerProvider, w.o.Telemetry.Propagator)
	fresh := 0
	for _, ev := range parsed.Events {
		ev.ReceivedAt = start
		r, err := pub.Publish(ctx, ev)
		if err != nil {
			return fmt.Errorf("okta catch-up: %w", err)
		}
		if !r.Duplicate {
			fresh++
		}
	}
	if fresh > 0 {
		w.o.Logger.WarnContext(ctx, "okta catch-up found events the hook missed", "events", fresh, "since", since)
	}
	// A minute of overlap: the System Log is eventually consistent.
	return w.gate.Control().SetCheckpoint(ctx, "okta", start.Add(-time.Minute))
}

// releaseDue publishes future-dated changes whose time has come back into
// JML_EVENTS (Nats-Msg-Id "due:<id>", so a crash between publish and Done
// cannot apply one twice), then removes them from the queue.
func (w *Worker) releaseDue(ctx context.Context) error {
	due, err := w.records.Due.PopDue(ctx, time.Now(), 100)
	if err != nil {
		return err
	}
	for _, d := range due {
		ev, err := events.Unmarshal(d.Event)
		if err != nil {
			w.o.Logger.ErrorContext(ctx, "undecodable scheduled change dropped from the due queue", "id", d.ID, "err", err)
			_ = w.records.Due.Done(ctx, d)
			continue
		}
		if err := w.releaseOne(ctx, d, ev); err != nil {
			return err
		}
		w.o.Logger.InfoContext(ctx, "future-dated change released", "id", d.ID, "person", d.PersonKey, "effective_at", d.EffectiveAt)
	}
	return nil
}

// releaseOne publishes one due change under a span of its own: a new trace
// (the release is the scheduler's work, perhaps months later) with a link to
// the handling that scheduled it, and whose context the message carries, so
// the convergence it causes continues the story of the original webhook.
func (w *Worker) releaseOne(ctx context.Context, d state.Due, ev events.Event) error {
	var opts []trace.SpanStartOption
	if sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(d.Trace))); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("jml.link", "scheduled_by")}}))
	}
	opts = append(opts, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		attribute.String("jml.due.id", d.ID), attribute.String("jml.due.effective_at", d.EffectiveAt.Format(time.RFC3339))))
	ctx, span := w.o.Telemetry.TracerProvider.Tracer("github.com/sentry-jml/sentry-jml/internal/app").Start(ctx, "release "+ev.Subject(), opts...)
	defer span.End()
	m := nats.NewMsg(ev.Subject())
	m.Data = d.Event
	m.Header.Set(events.HeaderSource, ev.Source)
	w.o.Telemetry.Propagator.Inject(ctx, events.HeaderCarrier(m.Header))
	if _, err := w.js.PublishMsg(ctx, m, jetstream.WithMsgID("due:"+d.ID)); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("release due change %s: %w", d.ID, err)
	}
	if err := w.records.Due.Done(ctx, d); err != nil {
		return fmt.Errorf("due change %s done: %w", d.ID, err)
	}
	return nil
}

// PlanView is `jml plan --json`.
type PlanView struct {
	Email  string `json:"email"`
	Person string `json:"person,omitempty"`
	// Known is false when no directory record names this email (no event or
	// roster row yet): nothing is planned for an unknown person.
	Known   bool             `json:"known"`
	Status  string           `json:"status,omitempty"`
	Desired DesiredView      `json:"desired"`
	Actual  ActualView       `json:"actual"`
	Steps   []PlanStep       `json:"steps"`
	Outcome converge.Outcome `json:"outcome"`
	Reason  string           `json:"reason,omitempty"`
	Notes   []string         `json:"notes,omitempty"`
	// Pending are the person's future-dated changes (effective_at).
	Pending []PendingView `json:"pending"`
	// Safety is what would hold the steps back now: a pause, halted brakes.
	Safety SafetyView `json:"safety"`
}

// OutcomeUnknownPerson is a plan's outcome for an email no directory record names.
const OutcomeUnknownPerson converge.Outcome = "unknown_person"

// PlanStep is one step, the change it makes in words, and the policy rule
// behind the grant it makes (empty for removals: no rule grants them).
type PlanStep struct {
	converge.Step
	Change string `json:"change"`
	Rule   string `json:"rule,omitempty"`
}

// SafetyView is the pause and brake state a plan is subject to.
type SafetyView struct {
	Paused       bool   `json:"paused"`
	PausedBy     string `json:"paused_by,omitempty"`
	BrakesHalted bool   `json:"brakes_halted"`
	// Error says the state could not be read (the gate then fails closed).
	Error string `json:"error,omitempty"`
}

// DesiredView is what policy wants for the person ("terminated" people: no access).
type DesiredView struct {
	Status  string            `json:"status"`
	OrgRole string            `json:"org_role,omitempty"`
	Teams   map[string]string `json:"teams,omitempty"`
	// EffectiveTeams are the team roles members really get: the org role's
	// minimum team role when higher (a manager is team admin everywhere).
	EffectiveTeams map[string]string `json:"effective_teams,omitempty"`
	// OrgRoleFrom and TeamsFrom name the rule behind each grant.
	OrgRoleFrom string            `json:"org_role_from,omitempty"`
	TeamsFrom   map[string]string `json:"teams_from,omitempty"`
}

// ActualView is the person's Sentry access; Present is false when no member or
// invite matches.
type ActualView struct {
	Present bool `json:"present"`
	Access  converge.Access
}

// MarshalJSON flattens the access fields next to present.
func (a ActualView) MarshalJSON() ([]byte, error) {
	if !a.Present {
		return []byte(`{"present":false}`), nil
	}
	type flat struct {
		Present bool `json:"present"`
		converge.Access
	}
	return json.Marshal(flat{true, a.Access})
}

// Plan shows desired vs actual and the steps convergence would take, changing
// nothing; with the rule behind each grant, the person's future-dated changes
// and the pause and brake state.
func (w *Worker) Plan(ctx context.Context, email string) (PlanView, error) {
	rec, err := w.findPerson(ctx, email)
	known := err == nil
	if errors.Is(err, state.ErrNotFound) {
		rec = state.PersonRecord{Key: "email:" + strings.ToLower(email), Person: events.Person{Email: email}}
	} else if err != nil {
		return PlanView{}, err
	}
	res, err := w.conv.Plan(ctx, rec)
	if err != nil {
		return PlanView{}, err
	}
	v := PlanView{Email: email, Known: known, Status: string(rec.Person.Status), Desired: DesiredView{Status: string(rec.Person.Status)},
		Outcome: res.Outcome, Reason: res.Reason, Notes: res.Notes, Steps: []PlanStep{}}
	if res.Actual != nil {
		v.Actual = ActualView{Present: true, Access: *res.Actual}
	}
	if st, err := w.gate.State(ctx); err != nil {
		v.Safety.Error = err.Error()
	} else {
		v.Safety = SafetyView{Paused: st.Paused, PausedBy: st.PausedBy, BrakesHalted: st.BrakesHalted}
	}
	all, err := w.Pending(ctx, "")
	if err != nil {
		return PlanView{}, err
	}
	v.Pending = []PendingView{}
	for _, p := range all {
		if (known && p.Person == rec.Key) || strings.EqualFold(p.Email, email) {
			v.Pending = append(v.Pending, p)
		}
	}
	if !known {
		// Nothing names this person yet: no event applied, no roster row.
		// Convergence never runs for them, whatever policy would grant.
		v.Outcome = OutcomeUnknownPerson
		v.Reason = "no event or roster row names this email: nothing is planned (Sentry access shown as read)"
		if len(v.Pending) > 0 {
			v.Reason = "no record yet: only future-dated changes name this email (listed below)"
		}
		return v, nil
	}
	v.Person = rec.Key
	var ex policy.Explanation
	if res.Desired != nil {
		ex = w.o.Policy().Explain(rec.Person)
		v.Desired.OrgRole, v.Desired.Teams = res.Desired.OrgRole, res.Desired.Teams
		v.Desired.EffectiveTeams = map[string]string{}
		v.Desired.TeamsFrom = map[string]string{}
		for slug, role := range res.Desired.Teams {
			if res.Desired.OrgRole != "billing" {
				v.Desired.EffectiveTeams[slug] = policy.EffectiveTeamRole(res.Desired.OrgRole, role)
			}
			if src, ok := ex.TeamsFrom[slug]; ok {
				v.Desired.TeamsFrom[slug] = src.String()
			}
		}
		if ex.OrgRole == res.Desired.OrgRole {
			v.Desired.OrgRoleFrom = ex.OrgRoleFrom.String()
		}
	}
	for _, st := range res.Steps {
		ps := PlanStep{Step: st, Change: st.Describe()}
		if res.Desired != nil {
			ps.Rule = ruleOf(st, ex, res.Desired.OrgRole == ex.OrgRole)
		}
		v.Steps = append(v.Steps, ps)
	}
	return v, nil
}

// ruleOf names the rule behind a step's grant ("" for a removal or when the
// plan did not come from policy, e.g. a rehire's snapshot).
func ruleOf(st converge.Step, ex policy.Explanation, fromPolicy bool) string {
	if !fromPolicy {
		return ""
	}
	switch st.Action {
	case converge.ActAddTeam, converge.ActSetTeamRole:
		if src, ok := ex.TeamsFrom[st.Team]; ok {
			return src.String()
		}
	case converge.ActSetOrgRole:
		if st.Role == ex.OrgRole {
			return ex.OrgRoleFrom.String()
		}
	case converge.ActInvite:
		if st.Role != ex.OrgRole {
			return ""
		}
		parts := []string{"org role " + st.Role + ": " + ex.OrgRoleFrom.String()}
		for _, t := range st.Teams {
			if src, ok := ex.TeamsFrom[t]; ok {
				parts = append(parts, "team "+t+": "+src.String())
			}
		}
		return strings.Join(parts, "; ")
	}
	return ""
}

// findPerson finds the directory record for an email: the email link, then the
// email key, then a scan.
func (w *Worker) findPerson(ctx context.Context, email string) (state.PersonRecord, error) {
	dir := w.records.Directory
	e := strings.ToLower(email)
	if key, err := dir.Resolve(ctx, "email", e); err == nil {
		return dir.Get(ctx, key)
	}
	if rec, err := dir.Get(ctx, "email:"+e); err == nil {
		return rec, nil
	}
	for rec, err := range dir.List(ctx) {
		if err != nil {
			return state.PersonRecord{}, err
		}
		if strings.EqualFold(rec.Person.Email, email) {
			return rec, nil
		}
	}
	return state.PersonRecord{}, fmt.Errorf("person %s: %w", email, state.ErrNotFound)
}

// Gate returns the safety gate (pause, brakes, the replica registry).
func (w *Worker) Gate() *safety.Gate { return w.gate }

// Evidence streams a person's evidence records, oldest first.
func (w *Worker) Evidence(ctx context.Context, email string) iter.Seq2[state.Evidence, error] {
	rec, err := w.findPerson(ctx, email)
	key := rec.Key
	if err != nil {
		key = "email:" + strings.ToLower(email)
	}
	return w.records.Evidence.ByPerson(ctx, key)
}

// DLQEntry is one dead letter.
type DLQEntry struct {
	Seq        uint64    `json:"seq"`
	Subject    string    `json:"subject"`
	Error      string    `json:"error"`
	Deliveries string    `json:"deliveries"`
	StreamSeq  string    `json:"stream_seq"`
	At         time.Time `json:"at"`
	Data       string    `json:"data"`
}

// DLQ lists the dead letters.
func (w *Worker) DLQ(ctx context.Context) ([]DLQEntry, error) {
	st, err := w.js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	out := []DLQEntry{}
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, DLQEntry{Seq: seq, Subject: m.Subject, Error: m.Header.Get(events.HeaderError),
			Deliveries: m.Header.Get(events.HeaderDeliveries), StreamSeq: m.Header.Get(events.HeaderOrigSeq), At: m.Time, Data: string(m.Data)})
	}
	return out, nil
}

// ReplayDLQ republishes dead letter seq (0 = all) to its original subject and
// removes it from the DLQ. It returns how many were replayed.
func (w *Worker) ReplayDLQ(ctx context.Context, seq uint64) (int, error) {
	entries, err := w.DLQ(ctx)
	if err != nil {
		return 0, err
	}
	st, err := w.js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if seq != 0 && e.Seq != seq {
			continue
		}
		m := nats.NewMsg(events.SubjectPrefix + strings.TrimPrefix(e.Subject, events.DLQPrefix))
		m.Data = []byte(e.Data)
		if _, err := w.js.PublishMsg(ctx, m, jetstream.WithMsgID("replay:"+strconv.FormatUint(e.Seq, 10))); err != nil {
			return n, fmt.Errorf("replay %d: %w", e.Seq, err)
		}
		if err := st.DeleteMsg(ctx, e.Seq); err != nil {
			return n, fmt.Errorf("replay %d: remove from DLQ: %w", e.Seq, err)
		}
		n++
	}
	if seq != 0 && n == 0 {
		return 0, fmt.Errorf("dead letter %d: %w", seq, state.ErrNotFound)
	}
	return n, nil
}
