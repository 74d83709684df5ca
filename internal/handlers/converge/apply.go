package converge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// apply runs the steps in order, treating "already done" as success. It
// returns the steps with their results.
//
// The lease is checked once per mutation, right before the request leaves:
// the Sentry client runs check after any rate-limit wait or retry backoff
// (sentry.WithPreSend), and the safety gate refuses mutations made without
// one. A check here as well would be a second store round trip per
// mutation, and an earlier, so weaker, one.
func (c *Converger) apply(ctx context.Context, rec state.PersonRecord, member *sentry.Member, steps []Step, check LeaseCheck) ([]Step, error) {
	done := make([]Step, 0, len(steps))
	if check != nil {
		ctx = sentry.WithPreSend(ctx, func(ctx context.Context) error { return check(ctx) })
	}
	for _, s := range steps {
		if s.Removal() && member != nil {
			if err := c.snapshot(ctx, rec, member); err != nil {
				return done, err
			}
		}
		sctx, span := c.tracer.Start(ctx, "converge."+s.Action, trace.WithAttributes(
			attribute.String("sentry.member_id", s.MemberID), attribute.String("jml.team", s.Team), attribute.String("jml.role", s.Role)))
		result, err := c.applyStep(sctx, &s)
		s.At = c.o.Now().UTC().Format(time.RFC3339Nano)
		if r, ok := sentry.RefusalOf(err); ok && r.Kind != sentry.RefusedLease && r.Kind != sentry.RefusedNoGate {
			// Held by the safety gate (pause, brakes): not sent, not a failure.
			s.Result = "held: " + r.Reason
			span.SetAttributes(attribute.String("jml.result", "held"), attribute.String("jml.held", r.Kind))
			span.End()
			done = append(done, s)
			return done, heldError(r.Kind, r.Reason, r.RetryAfter)
		}
		if err != nil {
			s.Result = "error: " + err.Error()
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.End()
			done = append(done, s)
			if errors.Is(err, state.ErrLeaseLost) {
				// Another replica owns the person now: not a failure of the step.
				return done, fmt.Errorf("%s %s: %w", s.Action, s.MemberID+s.Email, err)
			}
			return done, classify(fmt.Errorf("%s %s: %w", s.Action, s.MemberID+s.Email, err))
		}
		s.Result = result
		span.SetAttributes(attribute.String("jml.result", result))
		span.End()
		done = append(done, s)
		if s.Action == ActInvite && !s.regrant.IsZero() && result == "done" {
			c.markRegranted(ctx, rec, s.regrant, s.MemberID)
		}
		if s.Removal() {
			if c.o.Index != nil {
				c.o.Index.Forget(rec.Person.Email)
			}
			if member != nil && member.User != nil && !member.Pending {
				toks := c.tokens(ctx, member)
				done = append(done, toks...)
				for _, t := range toks {
					if t.Action == ActRevokeToken && strings.HasPrefix(t.Result, "error") {
						// The membership is gone; the next delivery revokes what is left
						// (planned from the access snapshot's user id).
						return done, &RetryLater{Delay: 10 * time.Second, Reason: "org token revocation failed: " + t.Result}
					}
				}
			}
		}
	}
	return done, nil
}

func (c *Converger) applyStep(ctx context.Context, s *Step) (string, error) {
	api := c.o.Sentry
	switch s.Action {
	case ActInvite:
		m, err := api.InviteMember(ctx, sentry.InviteRequest{Email: s.Email, OrgRole: s.Role, TeamRoles: s.teamRoles})
		switch {
		case errors.Is(err, sentry.ErrInviteQuota):
			return "", &RetryLater{Delay: time.Hour, Reason: "Sentry's daily invite quota is used up; the invite is queued"}
		case errors.Is(err, sentry.ErrBadRequest) && strings.Contains(strings.ToLower(err.Error()), "already"):
			return "already_done", nil
		case err != nil:
			return "", err
		}
		if c.o.Index != nil {
			c.o.Index.Store(s.Email, m.ID)
		}
		s.MemberID = m.ID
		return "done", nil
	case ActSetOrgRole:
		teamRoles := s.teamRoles
		if teamRoles == nil {
			// Sentry replaces the whole team set on PUT: send the set just read.
			cur, err := api.GetMember(ctx, s.MemberID)
			if err != nil {
				return "", err
			}
			teamRoles = cur.TeamRoles
			if teamRoles == nil {
				teamRoles = []sentry.TeamRole{}
			}
		}
		if _, err := api.UpdateMemberRole(ctx, s.MemberID, s.Role, teamRoles); err != nil {
			if errors.Is(err, sentry.ErrPermission) || errors.Is(err, sentry.ErrBadRequest) {
				// Sentry's member PUT is not transactional: the team set is saved
				// before the role checks, so a refusal may have changed the
				// member. Re-read it rather than assume nothing happened.
				return "", fmt.Errorf("%w: %w (%s)", errNeedsHuman, err, c.reread(ctx, s.MemberID))
			}
			return "", err
		}
		return "done", nil
	case ActReinvite:
		if _, err := api.ReinviteMember(ctx, s.MemberID, true); err != nil {
			return "", err
		}
		return "done", nil
	case ActAddTeam:
		added, err := api.AddMemberToTeam(ctx, s.MemberID, s.Team)
		if err != nil {
			return "", err
		}
		if !added {
			return "already_done", nil
		}
		return "done", nil
	case ActRemoveTeam:
		err := api.RemoveMemberFromTeam(ctx, s.MemberID, s.Team)
		if errors.Is(err, sentry.ErrNotFound) {
			return "already_done", nil
		}
		if err != nil {
			return "", err
		}
		return "done", nil
	case ActSetTeamRole:
		if _, err := api.SetTeamRole(ctx, s.MemberID, s.Team, s.Role); err != nil {
			return "", err
		}
		return "done", nil
	case ActRevokeToken:
		err := api.DeleteOrgAuthToken(ctx, s.TokenID)
		if errors.Is(err, sentry.ErrNotFound) {
			err = nil
		}
		if err != nil {
			return "", err
		}
		if c.o.Tokens != nil {
			c.o.Tokens.Revoked(s.TokenID)
		}
		return "done", nil
	case ActRemoveMember, ActDeleteInvite:
		var err error
		if s.Via == "scim" {
			err = api.SCIMDeleteUser(ctx, s.MemberID)
		} else {
			err = api.DeleteMember(ctx, s.MemberID)
		}
		if errors.Is(err, sentry.ErrNotFound) {
			return "already_gone", nil
		}
		if errors.Is(err, sentry.ErrLastOwner) || errors.Is(err, sentry.ErrInsufficientRole) {
			return "", fmt.Errorf("%w: %w", errNeedsHuman, err)
		}
		if err != nil {
			return "", err
		}
		return "done", nil
	}
	return "", fmt.Errorf("unknown action %q", s.Action)
}

var errNeedsHuman = errors.New("needs a human")

// reread describes a member as Sentry has it now (after a refused request).
func (c *Converger) reread(ctx context.Context, id string) string {
	m, err := c.o.Sentry.GetMember(ctx, id)
	if err != nil {
		return "re-read failed: " + err.Error()
	}
	teams := make([]string, 0, len(m.TeamRoles))
	for _, tr := range m.TeamRoles {
		teams = append(teams, tr.TeamSlug+":"+deref(tr.Role))
	}
	return fmt.Sprintf("re-read after the refusal: org role %s, teams [%s]", m.OrgRole, strings.Join(teams, " "))
}

// snapshot stores the member's access before it is removed, and puts it
// in the convergence's evidence.
func (c *Converger) snapshot(ctx context.Context, rec state.PersonRecord, m *sentry.Member) error {
	snap := state.Snapshot{PersonKey: rec.Key, Email: rec.Person.Email, MemberID: m.ID, OrgRole: m.OrgRole, Pending: m.Pending,
		TakenAt: c.o.Now().UTC(), EventID: rec.LastEventID}
	if m.User != nil {
		snap.UserID = m.User.ID
	}
	teams := map[string]string{}
	for _, slug := range m.Teams {
		teams[slug] = ""
	}
	for _, tr := range m.TeamRoles {
		teams[tr.TeamSlug] = deref(tr.Role)
	}
	for _, slug := range slices.Sorted(maps.Keys(teams)) {
		snap.Teams = append(snap.Teams, state.TeamAccess{Slug: slug, Role: teams[slug]})
	}
	if t := trailFrom(ctx); t != nil {
		// The evidence shows the access as Sentry had it (its own copy: the
		// stored snapshot below may carry owed roles over).
		seen := snap
		seen.Teams = slices.Clone(snap.Teams)
		t.mu.Lock()
		if t.snap == nil {
			t.snap = &seen
		}
		t.mu.Unlock()
	}
	if c.o.Snapshots == nil {
		return nil
	}
	// A re-granted invite (or its accepted member) removed before its team
	// roles were restored still owes them: its null roles are not the access
	// the person had, the previous snapshot's are.
	prev, err := c.o.Snapshots.Latest(ctx, rec.Key)
	switch {
	case err == nil && prev.RegrantedTo == m.ID && prev.RestoredAt.IsZero():
		owed := snapshotTeams(prev)
		for i, t := range snap.Teams {
			if t.Role == "" && owed[t.Slug] != "" {
				snap.Teams[i].Role = owed[t.Slug]
			}
		}
	case err != nil && !errors.Is(err, state.ErrNotFound):
		return fmt.Errorf("read previous access snapshot: %w", err)
	}
	if err := c.o.Snapshots.Put(ctx, snap); err != nil {
		return fmt.Errorf("save access snapshot: %w", err)
	}
	return nil
}

// tokens finds org auth tokens the removed person created (the token index when
// warm, else the audit log filtered by their user id) and revokes or reports them
// per policy. Failures here never undo the removal: they are reported as steps.
func (c *Converger) tokens(ctx context.Context, m *sentry.Member) []Step {
	pol := c.o.Policy()
	var created []TokenRef
	if c.o.Tokens != nil && c.o.Tokens.Warm() {
		created = c.o.Tokens.CreatedBy(m.User.ID)
	} else {
		for e, err := range c.o.Sentry.AuditLogs(ctx, sentry.AuditLogQuery{Event: "org-auth-token.create", ActorUserID: m.User.ID}) {
			if err != nil {
				return []Step{{Action: ActReportToken, MemberID: m.ID, Result: "error: audit log: " + err.Error()}}
			}
			if ref, ok := tokenRef(e); ok {
				created = append(created, ref)
			}
		}
	}
	var out []Step
	for _, t := range created {
		s := Step{Action: ActReportToken, MemberID: m.ID, TokenID: t.ID, Token: t.Name, Result: "reported",
			At: c.o.Now().UTC().Format(time.RFC3339Nano)}
		if pol.Leaver.OrgTokens == "revoke" {
			s.Action = ActRevokeToken
			// The lease is checked by the client right before the DELETE
			// leaves (apply's WithPreSend); a lost lease is an error result.
			switch err := c.o.Sentry.DeleteOrgAuthToken(ctx, t.ID); {
			case err == nil:
				s.Result = "done"
				if c.o.Tokens != nil {
					c.o.Tokens.Revoked(t.ID)
				}
			case errors.Is(err, sentry.ErrNotFound):
				s.Result = "already_gone"
			default:
				s.Result = "error: " + err.Error()
			}
		}
		out = append(out, s)
	}
	return out
}
