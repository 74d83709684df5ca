package converge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// A rehire re-grants the access snapshot with one invite, but Sentry stores an
// invite's team roles as null ("Do not set team-roles when inviting",
// src/sentry/core/endpoints/organization_member/index.py): a team role the
// person held (platform: admin) would silently become the org role's minimum.
// Teams the policy governs get their role from the member plan once the invite
// is accepted; the snapshot's roles on the other teams are restored here:
//
//   - the snapshot records the invite it was re-granted to (RegrantedTo);
//   - once that member has accepted, each of its teams whose stored role is
//     still null, and for which the snapshot had a role, gets set_team_role;
//   - then the snapshot is marked restored (RestoredAt) and never consulted
//     for this again, so a later change by a human is never reverted.

// whyRestore starts the Why of a restoring set_team_role step.
const whyRestore = "rehire: restoring team role from the access snapshot of "

// Restore is a rehire's access snapshot whose team roles are still to be
// restored on the member it was re-granted to (see RehireRestore).
type Restore struct {
	snap  state.Snapshot
	teams map[string]string // the snapshot's team roles by slug
}

// RehireRestore returns the restoration still owed to member, nil when there
// is none: member is accepted, it is the invite the person's latest access
// snapshot was re-granted to, the snapshot is not marked restored, and member
// has a team with a null stored role the policy does not govern (only then is
// the snapshot read: one read, no Sentry call). It is what the scheduled
// reconcile passes to PlanMemberWith.
func (c *Converger) RehireRestore(ctx context.Context, rec state.PersonRecord, member *sentry.Member) (*Restore, error) {
	pol := c.o.Policy()
	if c.o.Snapshots == nil || member == nil || member.Pending || rec.Person.Status != events.Active {
		return nil, nil
	}
	want := pol.Evaluate(rec.Person)
	candidate := false
	for slug := range nullRoleTeams(member) {
		if _, ok := want.Teams[slug]; !ok && !pol.Managed(slug) {
			candidate = true
			break
		}
	}
	if !candidate {
		return nil, nil
	}
	snap, err := c.o.Snapshots.Latest(ctx, rec.Key)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	if snap.RegrantedTo != member.ID || !snap.RestoredAt.IsZero() {
		return nil, nil
	}
	return &Restore{snap: snap, teams: snapshotTeams(snap)}, nil
}

// nullRoleTeams are the member's teams whose stored team role is null.
func nullRoleTeams(m *sentry.Member) map[string]bool {
	out := map[string]bool{}
	for _, slug := range m.Teams {
		out[slug] = true
	}
	for _, tr := range m.TeamRoles {
		out[tr.TeamSlug] = tr.Role == nil
	}
	return out
}

// planRestore adds the set_team_role steps that restore r's snapshot roles on
// an accepted member (finalRole: its org role after the plan), for teams the
// policy does not govern, whose stored role is null, where the snapshot's role
// gives more than the null role does.
func planRestore(in planInput, finalRole string, res *planResult) []Step {
	r := in.restore
	m := in.member
	if r == nil || m == nil || m.Pending || finalRole == "billing" {
		return nil
	}
	null := nullRoleTeams(m)
	why := whyRestore + r.snap.TakenAt.UTC().Format(time.RFC3339)
	var steps []Step
	for _, slug := range sortedKeys(r.teams) {
		role := r.teams[slug]
		if _, governed := in.desired.Teams[slug]; governed || role == "" || in.pol.Managed(slug) || !null[slug] || in.teams(slug).idp {
			continue
		}
		to, from := policy.EffectiveTeamRole(finalRole, role), policy.EffectiveTeamRole(finalRole, "")
		if to == from {
			continue
		}
		steps = append(steps, Step{Action: ActSetTeamRole, MemberID: m.ID, Email: in.person.Email, Team: slug, Role: to, From: from, Why: why})
	}
	if len(steps) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%s (re-granted to invite %s, now accepted)", why, m.ID))
	}
	return steps
}

// markRegranted records on the person's latest snapshot the invite it was
// re-granted to. A failure is logged: the invite stands, only the later
// restoration of its team roles is lost.
func (c *Converger) markRegranted(ctx context.Context, rec state.PersonRecord, takenAt time.Time, memberID string) {
	if c.o.Snapshots == nil || memberID == "" {
		return
	}
	err := c.updateSnapshot(ctx, rec.Key, func(s *state.Snapshot) bool {
		if !s.TakenAt.Equal(takenAt) {
			return false
		}
		s.RegrantedTo, s.RestoredAt = memberID, time.Time{}
		return true
	})
	if err != nil {
		c.o.Logger.ErrorContext(ctx, "rehire: could not record the invite on the access snapshot; its team roles will not be restored",
			"person", rec.Key, "member_id", memberID, "err", err)
	}
}

// markRestored marks the person's latest snapshot restored when it was
// re-granted to memberID. A failure is logged: the roles it restored are no
// longer null, so nothing is set twice.
func (c *Converger) markRestored(ctx context.Context, rec state.PersonRecord, memberID string) {
	if c.o.Snapshots == nil {
		return
	}
	err := c.updateSnapshot(ctx, rec.Key, func(s *state.Snapshot) bool {
		if s.RegrantedTo != memberID || !s.RestoredAt.IsZero() {
			return false
		}
		s.RestoredAt = c.o.Now().UTC()
		return true
	})
	if err != nil {
		c.o.Logger.WarnContext(ctx, "rehire: could not mark the access snapshot restored", "person", rec.Key, "member_id", memberID, "err", err)
	}
}

func (c *Converger) updateSnapshot(ctx context.Context, key string, change func(*state.Snapshot) bool) error {
	ctx = context.WithoutCancel(ctx) // what was done, was done
	snap, err := c.o.Snapshots.Latest(ctx, key)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if !change(&snap) {
		return nil
	}
	if err := c.o.Snapshots.Put(ctx, snap); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	return nil
}

// restoredSteps reports whether steps restore snapshot roles and all of them
// were applied.
func restoredSteps(steps []Step) (has, all bool) {
	all = true
	for _, s := range steps {
		if s.Action == ActSetTeamRole && strings.HasPrefix(s.Why, whyRestore) {
			has = true
			all = all && (s.Result == "done" || s.Result == "already_done")
		}
	}
	return has, has && all
}
