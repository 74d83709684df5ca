package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// inviteMemory remembers the invites pending at the previous tick, so the job
// notices acceptances (a full reconcile catches any it misses, e.g. after a
// leader change).
type inviteMemory struct {
	mu      sync.Mutex
	pending map[string]string // member id → email
}

func newInviteMemory() *inviteMemory { return &inviteMemory{pending: map[string]string{}} }

// InviteSummary is what one pending-invites tick did.
type InviteSummary struct {
	Pending   int      `json:"pending"`
	Expired   int      `json:"expired"`
	Resent    int      `json:"resent"`
	Removed   int      `json:"removed"`
	Accepted  int      `json:"accepted"` // accepted since the last tick and converged (team roles)
	Reported  int      `json:"reported"` // expired invites of nobody in the directory (orphans: report)
	Errors    []string `json:"errors,omitempty"`
	Converged []string `json:"converged,omitempty"`
}

// Invites is the pending-invites job: it converges invites accepted since the
// last tick (team roles can only be set on members), and re-sends or removes
// expired invites per policy (invites.expired: resend | remove). Expired
// invites of leavers are removed; those of nobody in the directory follow
// reconcile.orphans.
func (r *Reconciler) Invites(ctx context.Context) (InviteSummary, error) {
	ctx = sentry.WithPriority(ctx, sentry.PriorityReconcile)
	api := r.o.Sentry
	pol := r.o.Policy()
	var sum InviteSummary
	current := map[string]string{}
	var expired []sentry.Member
	for m, err := range api.ListMembers(ctx, "isInvited:true") {
		if err != nil {
			return sum, fmt.Errorf("list invites: %w", err)
		}
		if !m.Pending {
			continue
		}
		current[m.ID] = m.Email
		if m.Expired {
			expired = append(expired, m)
		}
	}
	sum.Pending, sum.Expired = len(current), len(expired)
	r.invites.mu.Lock()
	prev := r.invites.pending
	r.invites.pending = current
	r.invites.mu.Unlock()

	var teams func(string) converge.TeamInfo
	loadTeams := func() error {
		if teams != nil {
			return nil
		}
		known := map[string]converge.TeamInfo{}
		for t, err := range api.ListTeams(ctx, "") {
			if err != nil {
				return fmt.Errorf("list teams: %w", err)
			}
			known[t.Slug] = converge.TeamInfo{Exists: true, IdP: t.IdPProvisioned()}
		}
		teams = func(slug string) converge.TeamInfo { return known[slug] }
		return nil
	}
	fail := func(msg string) { sum.Errors = append(sum.Errors, msg) }

	// Accepted since the last tick: set the team roles policy wants.
	for id, email := range prev {
		if _, still := current[id]; still {
			continue
		}
		m, err := api.GetMember(ctx, id)
		if isNotFound(err) {
			continue // deleted, not accepted
		}
		if err != nil {
			fail("read " + id + ": " + err.Error())
			continue
		}
		if m.Pending {
			continue
		}
		rec, err := r.person(ctx, email)
		if err != nil || rec.Person.Status != events.Active {
			continue // leavers are reconcile's, under its brakes
		}
		if err := loadTeams(); err != nil {
			return sum, err
		}
		res := r.o.Converger.PlanMember(rec, m, teams)
		var steps []converge.Step
		for _, s := range res.Steps {
			if !s.Removal() {
				steps = append(steps, s)
			}
		}
		if len(steps) == 0 {
			continue
		}
		if err := r.withLease(ctx, rec.Key, func(check converge.LeaseCheck) error {
			out, err := r.o.Converger.ApplyPlanned(ctx, rec, m, steps, check)
			if err == nil {
				err = waitErr(out)
			}
			return err
		}); err != nil {
			fail(email + ": " + err.Error())
			continue
		}
		sum.Accepted++
		sum.Converged = append(sum.Converged, email)
		r.m.invites.Add(ctx, 1, metric.WithAttributes(attribute.String("action", "accepted")))
	}

	// Expired invites.
	for _, m := range expired {
		email := m.Email
		rec, err := r.person(ctx, email)
		known := err == nil
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			fail(email + ": " + err.Error())
			continue
		}
		var step converge.Step
		switch {
		case known && rec.Person.Status == events.Active && pol.Invites.ExpiredOrDefault() == "resend":
			detail, err := api.GetMember(ctx, m.ID)
			if err != nil {
				fail(email + ": " + err.Error())
				continue
			}
			trs := detail.TeamRoles
			if trs == nil {
				trs = []sentry.TeamRole{}
			}
			step = converge.Step{Action: converge.ActReinvite, MemberID: m.ID, Email: email}.WithTeamRoles(trs)
		case known && rec.Person.Status == events.Active:
			step = converge.Step{Action: converge.ActDeleteInvite, MemberID: m.ID, Email: email, Via: via(m)}
		case known && rec.Person.Status == "":
			// Status not known yet (only a mover or update event so far): not a
			// leaver. Convergence leaves such a person alone (PlanMember), and so
			// does this job: neither re-sent nor removed.
			continue
		case known: // a leaver: terminated or suspended
			step = converge.Step{Action: converge.ActDeleteInvite, MemberID: m.ID, Email: email, Via: via(m)}
		case pol.Reconcile.Orphans == "remove":
			rec = orphanRecord(email)
			step = converge.Step{Action: converge.ActDeleteInvite, MemberID: m.ID, Email: email, Via: via(m)}
		default:
			sum.Reported++
			continue
		}
		if pol.IsProtected(email) {
			continue
		}
		mm := m
		if err := r.withLease(ctx, rec.Key, func(check converge.LeaseCheck) error {
			out, err := r.o.Converger.ApplyPlanned(ctx, rec, &mm, []converge.Step{step}, check)
			if err == nil {
				err = waitErr(out)
			}
			if err == nil && out.Outcome == converge.OutcomeNeedsHuman {
				err = errors.New(out.Reason)
			}
			return err
		}); err != nil {
			fail(email + ": " + err.Error())
			continue
		}
		if step.Action == converge.ActReinvite {
			sum.Resent++
		} else {
			sum.Removed++
		}
		r.m.invites.Add(ctx, 1, metric.WithAttributes(attribute.String("action", step.Action)))
	}
	return sum, nil
}

// waitErr is the error of a result that must wait (held by the safety
// gate): the step was not made, so the job reports it as not done.
func waitErr(out converge.Result) error {
	if out.RequeueAfter > 0 {
		return errors.New("held: " + out.Reason)
	}
	return nil
}

func via(m sentry.Member) string {
	if m.IdPProvisioned() {
		return "scim"
	}
	return "rest"
}

// person finds the directory record of an email (the email link, then the email key).
func (r *Reconciler) person(ctx context.Context, email string) (state.PersonRecord, error) {
	e := lowerEmail(email)
	if key, err := r.o.Directory.Resolve(ctx, "email", e); err == nil {
		return r.o.Directory.Get(ctx, key)
	}
	return r.o.Directory.Get(ctx, "email:"+e)
}

func (r *Reconciler) withLease(ctx context.Context, key string, fn func(converge.LeaseCheck) error) error {
	release, check, err := r.personLease(ctx, key)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	defer release()
	return fn(check)
}
