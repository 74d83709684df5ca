package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// teamStructure plans team structure as code: declared teams are created when
// missing, and for a declared team with a projects list, project links are added
// and removed to match it. Undeclared teams and projects are never touched, and
// nothing is ever deleted but a declared team's link to a project.
func (r *Reconciler) teamStructure(ctx context.Context, org *orgState, pol policy.Policy) ([]PlannedStep, []Report, error) {
	if len(pol.Teams) == 0 {
		return nil, nil, nil
	}
	var steps []PlannedStep
	var reports []Report
	var projects map[string]bool
	needProjects := false
	for _, ts := range pol.Teams {
		if len(ts.Projects) > 0 {
			needProjects = true
		}
	}
	if needProjects {
		projects = map[string]bool{}
		for p, err := range r.o.Sentry.ListProjects(ctx) {
			if err != nil {
				return nil, nil, fmt.Errorf("list projects: %w", err)
			}
			projects[p.Slug] = true
		}
	}
	for _, ts := range pol.Teams {
		ti, exists := org.teamIdx[ts.Slug]
		if exists && org.teams[ti].IdP {
			reports = append(reports, Report{Kind: "note", Detail: "team " + ts.Slug + " is IdP-provisioned: its structure is not changed"})
			continue
		}
		linked := map[string]bool{}
		if !exists {
			steps = append(steps, PlannedStep{Step: converge.Step{Action: ActCreateTeam, Team: ts.Slug}, Name: ts.Name})
		} else if ts.Projects != nil {
			for p, err := range r.o.Sentry.TeamProjects(ctx, ts.Slug) {
				if err != nil {
					return nil, nil, fmt.Errorf("team %s projects: %w", ts.Slug, err)
				}
				linked[p.Slug] = true
			}
		}
		if ts.Projects == nil {
			continue
		}
		for _, p := range ts.Projects {
			if linked[p] {
				continue
			}
			if !projects[p] {
				reports = append(reports, Report{Kind: "note", Detail: "team " + ts.Slug + ": project " + p + " does not exist (projects are never created)"})
				continue
			}
			steps = append(steps, PlannedStep{Step: converge.Step{Action: ActAddProjectTeam, Team: ts.Slug}, Project: p})
		}
		var extra []string
		for p := range linked {
			if !slices.Contains(ts.Projects, p) {
				extra = append(extra, p)
			}
		}
		slices.Sort(extra)
		for _, p := range extra {
			steps = append(steps, PlannedStep{Step: converge.Step{Action: ActRemoveProjectTeam, Team: ts.Slug}, Project: p,
				Reason: "not declared for the team"})
		}
	}
	return steps, reports, nil
}

// applyOrgStep applies a team-structure or token step.
func (r *Reconciler) applyOrgStep(ctx context.Context, s PlannedStep) string {
	api := r.o.Sentry
	var err error
	switch s.Action {
	case ActCreateTeam:
		_, err = api.CreateTeam(ctx, s.Team, s.Name)
		if errors.Is(err, sentry.ErrConflict) {
			return "already_done"
		}
		if err == nil && r.o.SelfMemberID != "" {
			// Sentry adds the user who creates a team to it
			// (src/sentry/core/endpoints/organization_teams.py, post: an
			// OrganizationMemberTeam for the creator), and the service user's
			// Manager role makes it team admin there. It joined only by
			// creating the team, so it leaves: team structure as code declares
			// teams, not the daemon's own membership.
			if lerr := api.RemoveMemberFromTeam(ctx, r.o.SelfMemberID, s.Team); lerr != nil && !isNotFound(lerr) {
				r.o.Logger.WarnContext(ctx, "created team; the service user could not leave it", "team", s.Team, "err", lerr)
				return "error: team created, but the service user could not leave it: " + lerr.Error()
			}
		}
	case ActAddProjectTeam:
		err = api.AddProjectTeam(ctx, s.Project, s.Team)
		if errors.Is(err, sentry.ErrConflict) {
			return "already_done"
		}
	case ActRemoveProjectTeam:
		err = api.RemoveProjectTeam(ctx, s.Project, s.Team)
		if isNotFound(err) {
			return "already_done"
		}
	case converge.ActRevokeToken:
		return r.revokeToken(ctx, s.TokenID)
	case converge.ActReportToken:
		return "reported"
	default:
		return "error: unknown action " + s.Action
	}
	if err != nil {
		return errResult(err)
	}
	return "done"
}
