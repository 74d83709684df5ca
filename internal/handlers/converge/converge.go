package converge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Sentry is what convergence needs from the Sentry client.
type Sentry interface {
	FindMembersByEmail(ctx context.Context, email string) ([]sentry.Member, error)
	DeleteMember(ctx context.Context, id string) error
	SCIMDeleteUser(ctx context.Context, memberID string) error
}

// Outcome summarises one convergence.
type Outcome string

// Outcomes.
const (
	OutcomeInSync       Outcome = "in_sync"       // nothing to do
	OutcomeApplied      Outcome = "applied"       // steps were applied
	OutcomeProtected    Outcome = "protected"     // a guard forbids any change
	OutcomeDisputed     Outcome = "disputed"      // several members match the email
	OutcomeNeedsHuman   Outcome = "needs_human"   // the daemon may not make the change (e.g. owner leaver)
	OutcomeNotSupported Outcome = "not_supported" // desired state this version cannot converge yet
)

// Step is one action of a plan and, once applied, its result.
type Step struct {
	Action   string    `json:"action"` // remove_member, delete_invite
	MemberID string    `json:"member_id,omitempty"`
	Email    string    `json:"email,omitempty"`
	Via      string    `json:"via,omitempty"` // rest | scim
	Result   string    `json:"result,omitempty"`
	At       time.Time `json:"at,omitzero"`
}

// Result is what Converge did.
type Result struct {
	Outcome Outcome `json:"outcome"`
	Reason  string  `json:"reason,omitempty"`
	Steps   []Step  `json:"steps,omitempty"`
	// Removed is set when the person's last Sentry membership was removed now.
	Removed bool `json:"removed"`
}

// ErrPermanent marks failures that retrying will not fix (the worker dead-letters
// them after a few deliveries). Transient failures are returned unwrapped.
var ErrPermanent = errors.New("permanent failure")

// Options wire a Converger.
type Options struct {
	Sentry Sentry
	// Self is the daemon's own member (from members/me); never changed.
	SelfMemberID string
	SelfEmail    string
	SelfRole     string
	// Protected lists emails (exact, case-insensitive) or "re:<regexp>" patterns.
	Protected      []string
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
}

// Converger converges people.
type Converger struct {
	o         Options
	exact     map[string]bool
	patterns  []*regexp.Regexp
	tracer    trace.Tracer
	roleOrder map[string]int
}

// New validates o and returns a Converger.
func New(o Options) (*Converger, error) {
	if o.Sentry == nil {
		return nil, errors.New("converge: Sentry is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	c := &Converger{o: o, exact: map[string]bool{}, tracer: tp.Tracer("github.com/sentry-jml/sentry-jml/internal/handlers/converge"),
		roleOrder: map[string]int{"billing": 0, "member": 1, "admin": 2, "manager": 3, "owner": 4}}
	for _, p := range o.Protected {
		if expr, ok := strings.CutPrefix(p, "re:"); ok {
			re, err := regexp.Compile(expr)
			if err != nil {
				return nil, fmt.Errorf("converge: protected pattern %q: %w", p, err)
			}
			c.patterns = append(c.patterns, re)
			continue
		}
		c.exact[strings.ToLower(strings.TrimSpace(p))] = true
	}
	if o.SelfEmail != "" {
		c.exact[strings.ToLower(o.SelfEmail)] = true
	}
	return c, nil
}

func (c *Converger) protected(email string) bool {
	e := strings.ToLower(email)
	if c.exact[e] {
		return true
	}
	for _, re := range c.patterns {
		if re.MatchString(email) {
			return true
		}
	}
	return false
}

// LeaseCheck reports whether the caller still holds the person's lease; it is
// called before every mutation (nil = still held).
type LeaseCheck func(ctx context.Context) error

// Converge brings rec's person to their desired state in Sentry.
func (c *Converger) Converge(ctx context.Context, rec state.PersonRecord, check LeaseCheck) (res Result, err error) {
	ctx, span := c.tracer.Start(ctx, "converge", trace.WithAttributes(
		attribute.String("jml.person", rec.Key), attribute.String("jml.desired.status", string(rec.Person.Status))))
	defer func() {
		span.SetAttributes(attribute.String("jml.outcome", string(res.Outcome)), attribute.Int("jml.steps", len(res.Steps)))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	p := rec.Person
	switch p.Status {
	case events.Terminated, events.Suspended:
		return c.remove(ctx, rec, check)
	default:
		// Joiners, movers and rehires are converged by the policy engine, which the
		// convergence issue adds; until then an active person is left as they are.
		return Result{Outcome: OutcomeNotSupported, Reason: "desired status " + string(p.Status) + ": only removals are converged by this version"}, nil
	}
}

func (c *Converger) remove(ctx context.Context, rec state.PersonRecord, check LeaseCheck) (Result, error) {
	email := rec.Person.Email
	if email == "" {
		return Result{Outcome: OutcomeNeedsHuman, Reason: "no email known for this person, cannot match a Sentry member"}, nil
	}
	if c.protected(email) {
		return Result{Outcome: OutcomeProtected, Reason: "protected account"}, nil
	}
	ctx, span := c.tracer.Start(ctx, "converge.read_actual")
	members, err := c.o.Sentry.FindMembersByEmail(ctx, email)
	span.SetAttributes(attribute.Int("jml.matches", len(members)))
	span.End()
	if err != nil {
		return Result{}, classify(fmt.Errorf("find member %s: %w", email, err))
	}
	switch len(members) {
	case 0:
		return Result{Outcome: OutcomeInSync, Reason: "no member or invite with this email"}, nil
	case 1:
	default:
		ids := make([]string, len(members))
		for i, m := range members {
			ids[i] = m.ID
		}
		return Result{Outcome: OutcomeDisputed, Reason: "several members match the email: " + strings.Join(ids, ", ")}, nil
	}
	m := members[0]
	if m.ID == c.o.SelfMemberID {
		return Result{Outcome: OutcomeProtected, Reason: "the daemon's own member"}, nil
	}
	if c.roleOrder[m.OrgRole] > c.roleOrder[c.o.SelfRole] && c.o.SelfRole != "" {
		return Result{Outcome: OutcomeNeedsHuman, Reason: fmt.Sprintf("member role %s outranks the service user's role %s", m.OrgRole, c.o.SelfRole)}, nil
	}
	step := Step{Action: "remove_member", MemberID: m.ID, Email: email, Via: "rest"}
	if m.Pending {
		step.Action = "delete_invite"
	}
	if m.IdPProvisioned() {
		step.Via = "scim"
	}
	if err := check(ctx); err != nil {
		return Result{Steps: []Step{step}}, fmt.Errorf("lease lost before %s: %w", step.Action, err)
	}
	sctx, sspan := c.tracer.Start(ctx, "converge."+step.Action, trace.WithAttributes(
		attribute.String("sentry.member_id", m.ID), attribute.String("jml.via", step.Via)))
	if step.Via == "scim" {
		err = c.o.Sentry.SCIMDeleteUser(sctx, m.ID)
	} else {
		err = c.o.Sentry.DeleteMember(sctx, m.ID)
	}
	step.At = time.Now().UTC()
	switch {
	case err == nil:
		step.Result = "done"
	case errors.Is(err, sentry.ErrNotFound):
		step.Result = "already_gone"
		err = nil
	case errors.Is(err, sentry.ErrLastOwner), errors.Is(err, sentry.ErrInsufficientRole):
		step.Result = "refused: " + err.Error()
		sspan.End()
		return Result{Outcome: OutcomeNeedsHuman, Reason: err.Error(), Steps: []Step{step}}, nil
	default:
		step.Result = "error: " + err.Error()
	}
	if err != nil {
		sspan.RecordError(err)
		sspan.SetStatus(codes.Error, err.Error())
	}
	sspan.End()
	if err != nil {
		return Result{Steps: []Step{step}}, classify(fmt.Errorf("%s %s via %s: %w", step.Action, m.ID, step.Via, err))
	}
	return Result{Outcome: OutcomeApplied, Steps: []Step{step}, Removed: true}, nil
}

// classify wraps non-transient Sentry failures with ErrPermanent.
func classify(err error) error {
	if sentry.IsTransient(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}
