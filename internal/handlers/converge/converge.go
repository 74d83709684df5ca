package converge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Sentry is what convergence needs from the Sentry client.
type Sentry interface {
	FindMembersByEmail(ctx context.Context, email string) ([]sentry.Member, error)
	GetMember(ctx context.Context, id string) (*sentry.Member, error)
	DeleteMember(ctx context.Context, id string) error
	SCIMDeleteUser(ctx context.Context, memberID string) error
	InviteMember(ctx context.Context, req sentry.InviteRequest) (*sentry.Member, error)
	UpdateMemberRole(ctx context.Context, id, orgRole string, teamRoles []sentry.TeamRole) (*sentry.Member, error)
	ReinviteMember(ctx context.Context, id string, regenerate bool) (*sentry.Member, error)
	AddMemberToTeam(ctx context.Context, memberID, teamSlug string) (bool, error)
	RemoveMemberFromTeam(ctx context.Context, memberID, teamSlug string) error
	SetTeamRole(ctx context.Context, memberID, teamSlug, role string) (*string, error)
	GetTeam(ctx context.Context, slug string) (*sentry.Team, error)
	ListTeams(ctx context.Context, query string) iter.Seq2[sentry.Team, error]
	AuditLogs(ctx context.Context, f sentry.AuditLogQuery) iter.Seq2[sentry.AuditLogEntry, error]
	ListOrgAuthTokens(ctx context.Context) ([]sentry.OrgAuthToken, error)
	DeleteOrgAuthToken(ctx context.Context, id string) error
}

// Outcome summarises one convergence.
type Outcome string

// Outcomes.
const (
	OutcomeInSync     Outcome = "in_sync"     // nothing to do
	OutcomeApplied    Outcome = "applied"     // steps were applied
	OutcomeProtected  Outcome = "protected"   // a guard forbids any change
	OutcomeDisputed   Outcome = "disputed"    // several members match the email
	OutcomeNeedsHuman Outcome = "needs_human" // the daemon may not make the change (e.g. owner leaver)
	OutcomeHalted     Outcome = "halted"      // removals held back by the brakes or a pause
	OutcomePlanned    Outcome = "planned"     // dry run: steps computed, nothing changed
)

// Result is what Converge did.
type Result struct {
	Outcome Outcome  `json:"outcome"`
	Reason  string   `json:"reason,omitempty"`
	Steps   []Step   `json:"steps"`
	Notes   []string `json:"notes,omitempty"`
	// Held is the safety gate's refusal kind (paused, brakes) of a halted result.
	Held string `json:"held,omitempty"`
	// Removed is set when the person's Sentry membership was removed now.
	Removed bool `json:"removed"`
	// RequeueAfter, when positive, asks the caller to reconcile the person
	// again after it (Reconciler.Reconcile: a pause, the brakes, Sentry's
	// invite quota, the person busy on another replica). It is a wait, not
	// a failure.
	RequeueAfter time.Duration `json:"-"`
	// Desired and Actual describe the comparison (for `jml plan`).
	Desired *policy.Desired `json:"desired,omitempty"`
	Actual  *Access         `json:"actual,omitempty"`
	// OutOfBand is set when the convergence answered a change made by hand
	// in Sentry (the audit-log follower): who made it and what policy did.
	OutOfBand *OutOfBand `json:"out_of_band,omitempty"`
}

// Access is a member's actual access as read from Sentry.
type Access struct {
	MemberID string            `json:"member_id"`
	UserID   string            `json:"user_id,omitempty"`
	OrgRole  string            `json:"org_role"`
	Pending  bool              `json:"pending"`
	IdP      bool              `json:"idp_provisioned"`
	Teams    map[string]string `json:"teams"` // slug → effective team role
}

// ErrPermanent marks failures that retrying will not fix (the worker dead-letters
// them after a few deliveries). Transient failures are returned unwrapped.
var ErrPermanent = errors.New("permanent failure")

// RetryLater is how a record-level convergence (Converge) says a step must
// wait (invite quota, brakes, pause). Reconcile and ApplyPlanned move it into
// the result (Result.RequeueAfter), so their callers see waits as results,
// never as errors.
type RetryLater struct {
	Delay  time.Duration
	Reason string
	// Held is the safety gate's refusal kind (paused, brakes, starting) when
	// the gate holds the change; empty for other waits (invite quota).
	Held string
}

func (r *RetryLater) Error() string { return "retry later: " + r.Reason }

// Snapshots stores access snapshots durably: the state contract itself
// (state.Snapshots; convergence needs Put and Latest). Latest returns an error
// wrapping state.ErrNotFound when there is none.
type Snapshots interface {
	Put(ctx context.Context, s state.Snapshot) error
	Latest(ctx context.Context, personKey string) (state.Snapshot, error)
}

// evidencePlan is the Plan of a convergence's evidence record.
type evidencePlan struct {
	Outcome Outcome  `json:"outcome"`
	Reason  string   `json:"reason,omitempty"`
	Held    string   `json:"held,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	// OutOfBand names the hand-made change answered and its actor.
	OutOfBand *OutOfBand `json:"out_of_band,omitempty"`
}

// trail collects, during one convergence, what its evidence record carries
// besides the result: the access snapshot and the Sentry requests.
type trail struct {
	reqs *sentry.RequestLog
	mu   sync.Mutex
	snap *state.Snapshot
}

type trailKey struct{}

// withTrail starts a convergence's trail (a nested run keeps its own).
func withTrail(ctx context.Context) context.Context {
	ctx, reqs := sentry.WithRequestLog(ctx)
	return context.WithValue(ctx, trailKey{}, &trail{reqs: reqs})
}

func trailFrom(ctx context.Context) *trail {
	t, _ := ctx.Value(trailKey{}).(*trail)
	return t
}

// EvidenceLog records evidence durably: the append half of
// state.EvidenceLog, with the state types.
type EvidenceLog interface {
	Append(ctx context.Context, e state.Evidence) (state.Evidence, error)
}

// Gate is what convergence asks of the safety gate before it starts a plan:
// whether a mutation (a removal when removal is set) would be held now, from
// the replica's view, without I/O. It only saves work: the Sentry client
// asks the gate itself before every mutating request, so nothing is sent
// while paused or while the brakes hold removals, whatever this says.
type Gate interface {
	Held(removal bool) (kind, reason string)
}

// Options wire a Converger.
type Options struct {
	Sentry Sentry
	// Policy returns the current policy (it may be reloaded at any time).
	Policy func() policy.Policy
	// The daemon's own member (from members/me); never changed.
	SelfMemberID string
	SelfEmail    string
	SelfRole     string
	Snapshots    Snapshots    // optional
	Evidence     EvidenceLog  // optional
	Gate         Gate         // optional (the pre-check; the client enforces)
	Index        *MemberIndex // optional email → member id cache
	Tokens       *TokenIndex  // optional user id → org tokens created
	// Alert raises an operator alert (needs_human, disputed, brake_halted). Optional.
	Alert func(ctx context.Context, kind, person, summary string)
	// Target is recorded in evidence: "sandbox" or "sentry".
	Target         string
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	// MeterProvider exports jml_out_of_band_changes (default: the global one).
	MeterProvider metric.MeterProvider
	Now           func() time.Time
	// EvidenceRetry bounds how long a failing evidence write is retried
	// before the convergence fails with an *EvidenceError (default 1m).
	EvidenceRetry time.Duration
}

// Converger converges people.
type Converger struct {
	o      Options
	tracer trace.Tracer
	teams  *teamCache
	held   *heldMemory
	oob    metric.Int64Counter
}

// New validates o and returns a Converger.
func New(o Options) (*Converger, error) {
	if o.Sentry == nil {
		return nil, errors.New("converge: Sentry is required")
	}
	if o.Policy == nil {
		def := policy.Default()
		o.Policy = func() policy.Policy { return def }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Target == "" {
		o.Target = "sentry"
	}
	if o.EvidenceRetry <= 0 {
		o.EvidenceRetry = time.Minute
	}
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	oob, err := mp.Meter("github.com/sentry-jml/sentry-jml/internal/handlers/converge").Int64Counter("jml_out_of_band_changes",
		metric.WithDescription("changes made by hand in Sentry that convergence answered, by kind (managed_teams, org_role, leavers, membership) and action (revert, report, adopt)"))
	if err != nil {
		return nil, fmt.Errorf("converge: metric: %w", err)
	}
	return &Converger{o: o, tracer: tp.Tracer("github.com/sentry-jml/sentry-jml/internal/handlers/converge"),
		teams: newTeamCache(o.Sentry, 5*time.Minute, o.Now), held: newHeldMemory(), oob: oob}, nil
}

// LeaseCheck reports whether the caller still holds the person's lease; it is
// called before every mutation (nil = still held).
type LeaseCheck func(ctx context.Context) error

// Converge brings rec's person to their desired state in Sentry.
func (c *Converger) Converge(ctx context.Context, rec state.PersonRecord, check LeaseCheck) (Result, error) {
	return c.run(ctx, rec, check, false)
}

// Plan computes what Converge would do, changing nothing.
func (c *Converger) Plan(ctx context.Context, rec state.PersonRecord) (Result, error) {
	return c.run(ctx, rec, nil, true)
}

func (c *Converger) run(ctx context.Context, rec state.PersonRecord, check LeaseCheck, dry bool) (res Result, err error) {
	// A leaver's or suspended person's calls go first in the shared rate
	// budget; a caller that chose a lower class (reconcile) keeps it.
	if st := rec.Person.Status; (st == events.Terminated || st == events.Suspended) && sentry.PriorityFrom(ctx) == sentry.DefaultPriority {
		ctx = sentry.WithPriority(ctx, sentry.PriorityLeaver)
	}
	ctx, span := c.tracer.Start(ctx, "converge", trace.WithAttributes(
		attribute.String("jml.person", events.KeyForLog(rec.Key)), attribute.String("jml.desired.status", string(rec.Person.Status)),
		attribute.Bool("jml.dry_run", dry)))
	defer func() {
		span.SetAttributes(attribute.String("jml.outcome", string(res.Outcome)), attribute.Int("jml.steps", len(res.Steps)))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if !dry {
		ctx = withTrail(ctx)
	}
	res, pl, member, err := c.decide(ctx, rec)
	if err != nil || dry {
		if dry && err == nil && len(res.Steps) > 0 && res.Outcome == OutcomeApplied {
			res.Outcome = OutcomePlanned
		}
		return res, err
	}
	// A change made by hand (the audit-log follower): policy.out_of_band
	// says per kind whether its steps revert it or leave it in place.
	var left []Step
	if ob, ok := outOfBandFrom(ctx); ok && len(pl.Steps) > 0 {
		var actions map[string]string
		pl.Steps, left, actions = splitOutOfBand(c.o.Policy(), pl.Steps, rec.Person.Status)
		res.OutOfBand = &OutOfBand{OutOfBand: ob, Actions: actions}
		if len(pl.Steps) == 0 {
			res.Outcome, res.Steps = OutcomeAdopted, left
			res.Reason = "left in place by policy out_of_band (adopt)"
			for _, a := range actions {
				if a == policy.OutOfBandReport {
					res.Outcome, res.Reason = OutcomeReported, "left in place by policy out_of_band (report)"
				}
			}
			if err := c.evidence(ctx, rec, res, "out_of_band"); err != nil {
				return res, err
			}
			c.outOfBandAlert(ctx, rec.Person.Email, res.OutOfBand, left)
			return res, nil
		}
	}
	if len(pl.Steps) == 0 {
		if pl.restore != nil {
			// Accepted, and no null role left that the snapshot would raise.
			c.markRestored(ctx, rec, member.ID)
		}
		if res.Outcome == OutcomeNeedsHuman || res.Outcome == OutcomeDisputed {
			if err := c.evidence(ctx, rec, res, string(res.Outcome)); err != nil {
				return res, err
			}
			c.alert(ctx, string(res.Outcome), rec.Person.Email, res.Reason)
		}
		if res.Outcome == OutcomeInSync && rec.Person.Status == events.Terminated {
			// A termination with nothing left to remove ("already removed")
			// still gets its record: the deprovisioning report needs it.
			if err := c.evidence(ctx, rec, res, "convergence"); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	if err := c.precheck(pl.Steps); err != nil {
		return c.halt(ctx, rec, res, err)
	}
	res.Steps, err = c.apply(ctx, rec, member, pl.Steps, check)
	if errors.Is(err, errNeedsHuman) {
		res.Outcome, res.Reason = OutcomeNeedsHuman, err.Error()
		if err := c.evidence(ctx, rec, res, "needs_human"); err != nil {
			return res, err
		}
		c.alert(ctx, "needs_human", rec.Person.Email, res.Reason)
		return res, nil
	}
	if isHeld(err) {
		return c.halt(ctx, rec, res, err)
	}
	if err != nil {
		if eerr := c.evidence(ctx, rec, Result{Outcome: "error", Reason: err.Error(), Steps: res.Steps, Notes: res.Notes}, "convergence"); eerr != nil {
			return res, eerr
		}
		return res, err
	}
	for _, s := range res.Steps {
		if s.Removal() && (s.Result == "done" || s.Result == "already_gone") {
			res.Removed = true
		}
	}
	applied := res.Steps
	res.Steps = append(append([]Step(nil), res.Steps...), left...)
	if err := c.evidence(ctx, rec, res, "convergence"); err != nil {
		return res, err
	}
	if has, all := restoredSteps(res.Steps); pl.restore != nil && (all || !has) {
		c.markRestored(ctx, rec, member.ID)
	}
	if res.OutOfBand != nil {
		c.outOfBandAlert(ctx, rec.Person.Email, res.OutOfBand, append(applied, left...))
	}
	if res.Outcome == OutcomeNeedsHuman {
		// Steps were applied, but part of the plan is held for a human (an
		// IdP-managed org role): the evidence says why, and so does the alert.
		c.alert(ctx, string(res.Outcome), rec.Person.Email, res.Reason)
	}
	if pl.rehired {
		// The snapshot's access is re-granted; now converge the new invite to the
		// current policy, in the same run, so the end state never depends on
		// whether the rehire was seen before or after older events.
		next, err := c.run(ctx, rec, check, false)
		next.Steps = append(res.Steps, next.Steps...)
		next.Notes = append(res.Notes, next.Notes...)
		if next.Outcome == OutcomeInSync {
			next.Outcome = OutcomeApplied
		}
		return next, err
	}
	return res, nil
}

// decide reads Sentry and computes the plan.
func (c *Converger) decide(ctx context.Context, rec state.PersonRecord) (Result, planResult, *sentry.Member, error) {
	p := rec.Person
	pol := c.o.Policy()
	email := p.Email
	switch {
	case email == "":
		r := Result{Outcome: OutcomeNeedsHuman, Reason: "no email known for this person, cannot match a Sentry member"}
		return r, planResult{}, nil, nil
	case strings.EqualFold(email, c.o.SelfEmail) || pol.IsProtected(email):
		return Result{Outcome: OutcomeProtected, Reason: "protected account"}, planResult{}, nil, nil
	}
	member, disputed, err := c.lookup(ctx, email)
	if err != nil {
		return Result{}, planResult{}, nil, classify(err)
	}
	if len(disputed) > 0 {
		return Result{Outcome: OutcomeDisputed, Reason: "several members match the email: " + strings.Join(disputed, ", ")}, planResult{}, nil, nil
	}
	if member != nil && member.ID == c.o.SelfMemberID {
		return Result{Outcome: OutcomeProtected, Reason: "the daemon's own member"}, planResult{}, nil, nil
	}
	if p.Status == "" {
		return Result{Outcome: OutcomeInSync, Reason: "status not known yet (no event has set it)", Actual: accessOf(member)}, planResult{}, nil, nil
	}
	in := planInput{person: p, pol: pol, member: member, selfID: c.o.SelfMemberID, selfRol: c.o.SelfRole,
		teams: func(slug string) teamInfo { return c.teams.get(ctx, slug) }}
	res := Result{Actual: accessOf(member)}
	var pl planResult
	switch p.Status {
	case events.Terminated:
		pl = planRemoval(in)
		pl.Steps = append(pl.Steps, c.leftoverTokens(ctx, rec, member, pol)...)
	case events.Suspended:
		if pol.Suspend == "strip" {
			d := policy.Desired{OrgRole: "member", Teams: map[string]string{}}
			res.Desired = &d
			pl = planStrip(in)
		} else {
			pl = planRemoval(in)
			pl.Steps = append(pl.Steps, c.leftoverTokens(ctx, rec, member, pol)...)
		}
	default:
		in.desired = pol.Evaluate(p)
		res.Desired = &in.desired
		if member == nil && c.o.Snapshots != nil {
			if snap, err := c.o.Snapshots.Latest(ctx, rec.Key); err == nil {
				d := policy.Desired{OrgRole: snap.OrgRole, Teams: snapshotTeams(snap)}
				if rank(d.OrgRole) > rank(c.o.SelfRole) || d.OrgRole == "owner" {
					d.OrgRole = in.desired.OrgRole
				}
				in.rehire, in.rehireAt = &d, snap.TakenAt
				pl.Notes = append(pl.Notes, "rehire: re-granting the access snapshot of "+snap.TakenAt.Format(time.RFC3339))
			} else if !errors.Is(err, state.ErrNotFound) {
				return Result{}, planResult{}, nil, fmt.Errorf("read snapshot: %w", err)
			}
		}
		restore, err := c.RehireRestore(ctx, rec, member)
		if err != nil {
			return Result{}, planResult{}, nil, err
		}
		in.restore = restore
		notes := pl.Notes
		pl = planActive(in)
		pl.Notes = append(notes, pl.Notes...)
		pl.rehired = in.rehire != nil && in.member == nil
		pl.restore = restore
	}
	if len(pl.Steps) > 0 && pl.Outcome == OutcomeInSync {
		pl.Outcome, pl.Reason = OutcomeApplied, ""
	}
	res.Outcome, res.Reason, res.Steps, res.Notes = pl.Outcome, pl.Reason, pl.Steps, pl.Notes
	return res, pl, member, nil
}

// leftoverTokens plans the revocation of org tokens a removed person created
// that are still alive (a revocation failed after the removal). It reads only
// the snapshot and the warm token index: no Sentry call when there are none.
func (c *Converger) leftoverTokens(ctx context.Context, rec state.PersonRecord, member *sentry.Member, pol policy.Policy) []Step {
	if member != nil || pol.Leaver.OrgTokens != "revoke" || c.o.Snapshots == nil || c.o.Tokens == nil || !c.o.Tokens.Warm() {
		return nil
	}
	snap, err := c.o.Snapshots.Latest(ctx, rec.Key)
	if err != nil || snap.UserID == "" {
		return nil
	}
	var steps []Step
	for _, t := range c.o.Tokens.CreatedBy(snap.UserID) {
		steps = append(steps, Step{Action: ActRevokeToken, MemberID: snap.MemberID, TokenID: t.ID, Token: t.Name})
	}
	return steps
}

// lookup finds the one member (or invite) whose email matches exactly, with its
// detail (teams, team roles). disputed lists the ids when several match.
func (c *Converger) lookup(ctx context.Context, email string) (*sentry.Member, []string, error) {
	ctx, span := c.tracer.Start(ctx, "converge.read_actual")
	defer span.End()
	if c.o.Index != nil {
		if id, ok := c.o.Index.Lookup(email); ok {
			m, err := c.o.Sentry.GetMember(ctx, id)
			switch {
			case err == nil && emailMatches(m, email):
				span.SetAttributes(attribute.Bool("jml.index_hit", true))
				return m, nil, nil
			case err == nil, errors.Is(err, sentry.ErrNotFound):
				c.o.Index.Forget(email)
			default:
				return nil, nil, fmt.Errorf("read member %s: %w", id, err)
			}
		}
	}
	ms, err := c.o.Sentry.FindMembersByEmail(ctx, email)
	if err != nil {
		return nil, nil, fmt.Errorf("find member %s: %w", email, err)
	}
	span.SetAttributes(attribute.Int("jml.matches", len(ms)))
	switch len(ms) {
	case 0:
		return nil, nil, nil
	case 1:
	default:
		ids := make([]string, len(ms))
		for i, m := range ms {
			ids[i] = m.ID
		}
		return nil, ids, nil
	}
	m, err := c.o.Sentry.GetMember(ctx, ms[0].ID)
	if errors.Is(err, sentry.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read member %s: %w", ms[0].ID, err)
	}
	if c.o.Index != nil {
		c.o.Index.Store(email, m.ID)
	}
	return m, nil, nil
}

func accessOf(m *sentry.Member) *Access {
	if m == nil {
		return nil
	}
	a := &Access{MemberID: m.ID, OrgRole: m.OrgRole, Pending: m.Pending, IdP: m.IdPProvisioned(), Teams: map[string]string{}}
	if m.User != nil {
		a.UserID = m.User.ID
	}
	for _, slug := range m.Teams {
		a.Teams[slug] = policy.EffectiveTeamRole(m.OrgRole, "")
	}
	for _, tr := range m.TeamRoles {
		a.Teams[tr.TeamSlug] = policy.EffectiveTeamRole(m.OrgRole, deref(tr.Role))
	}
	return a
}

// precheck asks the gate's view whether the plan would be held (pause, or
// brakes for a plan with a removal), before anything is written or sent.
func (c *Converger) precheck(steps []Step) error {
	if c.o.Gate == nil {
		return nil
	}
	removal := false
	for _, s := range steps {
		removal = removal || s.Removal()
	}
	if kind, reason := c.o.Gate.Held(removal); kind != "" {
		return heldError(kind, reason, 0)
	}
	return nil
}

// heldError is the RetryLater for a mutation the safety gate holds.
func heldError(kind, reason string, after time.Duration) *RetryLater {
	if after <= 0 {
		after = 5 * time.Second
		if kind == sentry.RefusedBrakes {
			after = 10 * time.Second
		}
	}
	return &RetryLater{Delay: after, Reason: reason, Held: kind}
}

// isHeld reports a wait imposed by the safety gate (pause, brakes).
func isHeld(err error) bool {
	var rl *RetryLater
	return errors.As(err, &rl) && rl.Held != ""
}

// halt records a plan held by the gate: outcome halted, and an evidence
// record the first time this person is held for this reason (redeliveries
// every few seconds while paused would otherwise write one each).
func (c *Converger) halt(ctx context.Context, rec state.PersonRecord, res Result, err error) (Result, error) {
	var rl *RetryLater
	errors.As(err, &rl)
	res.Outcome, res.Reason, res.Held = OutcomeHalted, rl.Reason, rl.Held
	// A replica still starting holds changes for a second: not worth a record.
	if rl.Held != sentry.RefusedPaused && rl.Held != sentry.RefusedBrakes {
		return res, err
	}
	if c.held.first(rec.Key, rl.Held, c.o.Now()) {
		if eerr := c.evidence(ctx, rec, res, "halted"); eerr != nil {
			return res, eerr
		}
	}
	return res, err
}

// heldMemory remembers which people were recently recorded as held, and why.
type heldMemory struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func newHeldMemory() *heldMemory { return &heldMemory{seen: map[string]time.Time{}} }

// heldRecordEvery is how often a person still held for the same reason gets
// another halted evidence record.
const heldRecordEvery = 10 * time.Minute

func (h *heldMemory) first(person, kind string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := kind + "|" + person
	if t, ok := h.seen[k]; ok && now.Sub(t) < heldRecordEvery {
		return false
	}
	if len(h.seen) > 10000 {
		for k, t := range h.seen {
			if now.Sub(t) >= heldRecordEvery {
				delete(h.seen, k)
			}
		}
	}
	h.seen[k] = now
	return true
}

// ErrEvidence marks a convergence whose evidence record could not be written
// (an *EvidenceError): the worker dead-letters the event at once, with the
// record, instead of acknowledging it.
var ErrEvidence = errors.New("evidence record not written")

// EvidenceError carries the record that could not be written.
type EvidenceError struct {
	Record state.Evidence
	Err    error
}

func (e *EvidenceError) Error() string {
	b, _ := json.Marshal(e.Record)
	return "evidence record not written: " + e.Err.Error() + "; record: " + string(b)
}

// Unwrap returns ErrEvidence and the cause.
func (e *EvidenceError) Unwrap() []error { return []error{ErrEvidence, e.Err} }

// evidence records what a convergence did. A failed write is retried (up to
// EvidenceRetry); then it is an *EvidenceError and the caller must not
// report success: an audit record is never dropped silently.
func (c *Converger) evidence(ctx context.Context, rec state.PersonRecord, res Result, kind string) error {
	if c.o.Evidence == nil {
		return nil
	}
	e, err := c.evidenceRecord(ctx, rec, res, kind)
	if err != nil {
		return err
	}
	// A cancelled caller still gets its record written: what was done, was done.
	wctx := context.WithoutCancel(ctx)
	deadline := time.Now().Add(c.o.EvidenceRetry)
	delay := 50 * time.Millisecond
	for {
		_, err := c.o.Evidence.Append(wctx, e)
		if err == nil {
			return nil
		}
		if !time.Now().Add(delay).Before(deadline) {
			ee := &EvidenceError{Record: e, Err: err}
			c.o.Logger.ErrorContext(ctx, "evidence record not written after retries", "person", rec.Key, "err", err, "record", ee.Error())
			return ee
		}
		c.o.Logger.WarnContext(ctx, "evidence record failed; retrying", "person", rec.Key, "err", err, "retry_in", delay.String())
		time.Sleep(delay)
		delay = min(2*delay, 2*time.Second)
	}
}

// evidenceRecord is the state record of what a convergence did: the plan
// (outcome, reason, gate refusal, notes), the steps, the access snapshot
// read before a removal and the Sentry requests sent.
func (c *Converger) evidenceRecord(ctx context.Context, rec state.PersonRecord, res Result, kind string) (state.Evidence, error) {
	steps := res.Steps
	if steps == nil {
		steps = []Step{}
	}
	stepsJSON, err := json.Marshal(steps)
	if err != nil {
		return state.Evidence{}, fmt.Errorf("evidence steps: %w", err)
	}
	plan, err := json.Marshal(evidencePlan{Outcome: res.Outcome, Reason: res.Reason, Held: res.Held, Notes: res.Notes, OutOfBand: res.OutOfBand})
	if err != nil {
		return state.Evidence{}, fmt.Errorf("evidence plan: %w", err)
	}
	e := state.Evidence{PersonKey: rec.Key, Email: rec.Person.Email, At: c.o.Now().UTC(), Kind: kind, Target: c.o.Target,
		Plan: plan, Steps: stepsJSON, Outcome: string(res.Outcome), Status: string(rec.Person.Status)}
	if rec.LastEventID != "" {
		e.EventIDs = []string{rec.LastEventID}
	}
	if t := trailFrom(ctx); t != nil {
		for _, r := range t.reqs.Records() {
			e.Requests = append(e.Requests, state.SentryRequest{Method: r.Method, Path: r.Path, Status: r.Status, At: r.At,
				DurationMS: r.Duration.Milliseconds(), Error: r.Err})
		}
		t.mu.Lock()
		e.Snapshot = t.snap
		t.mu.Unlock()
	}
	return e, nil
}

// snapshotTeams is a snapshot's team roles by slug.
func snapshotTeams(s state.Snapshot) map[string]string {
	teams := make(map[string]string, len(s.Teams))
	for _, t := range s.Teams {
		teams[t.Slug] = t.Role
	}
	return teams
}

func (c *Converger) alert(ctx context.Context, kind, person, summary string) {
	if c.o.Alert != nil {
		c.o.Alert(ctx, kind, person, summary)
	}
}

// classify wraps non-transient Sentry failures with ErrPermanent.
func classify(err error) error {
	var rl *RetryLater
	if sentry.IsTransient(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &rl) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}
