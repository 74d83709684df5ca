package converge

import (
	"context"
	"errors"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// This file exports convergence's pure planning and its step application for the
// reconciler, which reads the whole organization in bulk and must plan each
// person from the member it already read, without another API call.

// TeamInfo is what planning needs to know about a team.
type TeamInfo struct {
	Exists bool `json:"exists"`
	IdP    bool `json:"idp"`
}

// PlanMember computes what Converge would do for rec given member, the
// person's member or pending invite as already read (Teams and TeamRoles filled
// as the detail endpoint does; nil when there is none), and teams, what is known
// about each team. It does no I/O: a rehire's access snapshot is not consulted
// (an invite follows the current policy; see PlanMemberWith for the team roles
// a rehire's accepted invite is still owed).
func (c *Converger) PlanMember(rec state.PersonRecord, member *sentry.Member, teams func(slug string) TeamInfo) Result {
	return c.PlanMemberWith(rec, member, teams, nil)
}

// PlanMemberWith is PlanMember that also restores restore's snapshot team
// roles on an accepted member (from RehireRestore; nil for none), as Converge
// does. ApplyPlanned marks the snapshot restored once those steps are done.
func (c *Converger) PlanMemberWith(rec state.PersonRecord, member *sentry.Member, teams func(slug string) TeamInfo, restore *Restore) Result {
	p := rec.Person
	pol := c.o.Policy()
	switch {
	case p.Email == "":
		return Result{Outcome: OutcomeNeedsHuman, Reason: "no email known for this person, cannot match a Sentry member"}
	case strings.EqualFold(p.Email, c.o.SelfEmail) || pol.IsProtected(p.Email):
		return Result{Outcome: OutcomeProtected, Reason: "protected account", Actual: accessOf(member)}
	case member != nil && member.ID == c.o.SelfMemberID:
		return Result{Outcome: OutcomeProtected, Reason: "the daemon's own member", Actual: accessOf(member)}
	case p.Status == "":
		return Result{Outcome: OutcomeInSync, Reason: "status not known yet (no event has set it)", Actual: accessOf(member)}
	}
	in := planInput{person: p, pol: pol, member: member, selfID: c.o.SelfMemberID, selfRol: c.o.SelfRole,
		teams: func(slug string) teamInfo { ti := teams(slug); return teamInfo{exists: ti.Exists, idp: ti.IdP} }}
	res := Result{Actual: accessOf(member)}
	var pl planResult
	switch p.Status {
	case events.Terminated:
		pl = planRemoval(in)
	case events.Suspended:
		if pol.Suspend == "strip" {
			d := policy.Desired{OrgRole: "member", Teams: map[string]string{}}
			res.Desired = &d
			pl = planStrip(in)
		} else {
			pl = planRemoval(in)
		}
	default:
		in.desired = pol.Evaluate(p)
		res.Desired = &in.desired
		in.restore = restore
		pl = planActive(in)
	}
	res.Outcome, res.Reason, res.Steps, res.Notes = pl.Outcome, pl.Reason, pl.Steps, pl.Notes
	return res
}

// ApplyPlanned applies steps planned by PlanMember (or re-created with
// WithTeamRoles from a stored plan) for rec, with member as read when
// planning: the lease check before each mutation, the access snapshot before a
// removal, the leaver's org tokens after it, and an evidence record. Like
// every mutation, each step passes the safety gate: while paused, or for a
// removal while the brakes are halted, the step is marked "held: …" and the
// result is a wait (RequeueAfter, nil error) whose Held names the refusal.
func (c *Converger) ApplyPlanned(ctx context.Context, rec state.PersonRecord, member *sentry.Member, steps []Step, check LeaseCheck) (Result, error) {
	res := Result{Outcome: OutcomeApplied}
	ctx = withTrail(ctx)
	done, err := c.apply(ctx, rec, member, steps, check)
	res.Steps = done
	if errors.Is(err, errNeedsHuman) {
		res.Outcome, res.Reason = OutcomeNeedsHuman, err.Error()
		return res, c.evidence(ctx, rec, res, "needs_human")
	}
	if isHeld(err) {
		return asWait(c.halt(ctx, rec, res, err))
	}
	if err != nil {
		if eerr := c.evidence(ctx, rec, Result{Outcome: "error", Reason: err.Error(), Steps: done}, "convergence"); eerr != nil {
			return res, eerr
		}
		return res, err
	}
	for _, s := range done {
		if s.Removal() && (s.Result == "done" || s.Result == "already_gone") {
			res.Removed = true
		}
	}
	if err := c.evidence(ctx, rec, res, "convergence"); err != nil {
		return res, err
	}
	if _, all := restoredSteps(done); all && member != nil {
		c.markRestored(ctx, rec, member.ID)
	}
	return res, nil
}

// TeamRoles returns the team set a step sends with it (an invite's teams, an
// invite PUT's whole team set); nil when the step reads it at apply time.
func (s Step) TeamRoles() []sentry.TeamRole { return s.teamRoles }

// WithTeamRoles returns s carrying trs (restoring a step decoded from a stored
// plan; JSON does not carry the team set).
func (s Step) WithTeamRoles(trs []sentry.TeamRole) Step {
	s.teamRoles = trs
	return s
}

// MatchesEmail reports whether m's invite email or user email equals email
// (exact, case-insensitive): the identity rule.
func MatchesEmail(m *sentry.Member, email string) bool { return emailMatches(m, email) }

// Self returns the daemon's own member id and email (never changed).
func (c *Converger) Self() (memberID, email string) { return c.o.SelfMemberID, c.o.SelfEmail }
