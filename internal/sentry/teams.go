package sentry

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
)

const (
	patTeams        = "/api/0/organizations/{org}/teams/"
	patTeam         = "/api/0/teams/{org}/{team}/"
	patTeamMembers  = "/api/0/teams/{org}/{team}/members/"
	patTeamProjects = "/api/0/teams/{org}/{team}/projects/"
	patProjects     = "/api/0/organizations/{org}/projects/"
	patProjectTeam  = "/api/0/projects/{org}/{project}/teams/{team}/"
)

// ListTeams streams the organization's teams ordered by slug, without their
// projects. query takes Sentry's tokens (slug:, id:, free text); "" lists all.
func (c *Client) ListTeams(ctx context.Context, query string) iter.Seq2[Team, error] {
	q := url.Values{"detailed": {"0"}}
	if query != "" {
		q.Set("query", query)
	}
	return paginate[Team](ctx, c, "ListTeams", call{method: http.MethodGet, pattern: patTeams, query: q})
}

// GetTeam reads one team by slug.
func (c *Client) GetTeam(ctx context.Context, slug string) (t *Team, err error) {
	ctx, span := c.start(ctx, "GetTeam", attribute.String("sentry.team", slug))
	defer func() { end(span, err) }()
	resp, err := c.do(ctx, call{method: http.MethodGet, pattern: patTeam, args: []string{slug}})
	if err != nil {
		return nil, fmt.Errorf("get team %s: %w", slug, err)
	}
	t = new(Team)
	if err := resp.decode(t); err != nil {
		return nil, fmt.Errorf("get team %s: %w", slug, err)
	}
	return t, nil
}

// CreateTeam creates a team; a taken slug is ErrConflict. With a user token the
// caller becomes a member of the new team. Not repeated after an ambiguous
// failure (a repeat would be a 409).
func (c *Client) CreateTeam(ctx context.Context, slug, name string) (t *Team, err error) {
	ctx, span := c.start(ctx, "CreateTeam", attribute.String("sentry.team", slug))
	defer func() { end(span, err) }()
	body := map[string]string{}
	if slug != "" {
		body["slug"] = slug
	}
	if name != "" {
		body["name"] = name
	}
	resp, err := c.do(ctx, call{method: http.MethodPost, pattern: patTeams, body: body})
	if err != nil {
		return nil, fmt.Errorf("create team %s: %w", slug, err)
	}
	t = new(Team)
	if err := resp.decode(t); err != nil {
		return nil, fmt.Errorf("create team %s: %w", slug, err)
	}
	return t, nil
}

// DeleteTeam schedules a team for deletion (204). IdP-provisioned teams are
// ErrIdPManaged.
func (c *Client) DeleteTeam(ctx context.Context, slug string) (err error) {
	ctx, span := c.start(ctx, "DeleteTeam", attribute.String("sentry.team", slug))
	defer func() { end(span, err) }()
	if _, err := c.do(ctx, call{method: http.MethodDelete, pattern: patTeam, args: []string{slug}}); err != nil {
		return fmt.Errorf("delete team %s: %w", slug, err)
	}
	return nil
}

// TeamMembers streams a team's members (no pending invites) with TeamRole and
// TeamSlug set.
func (c *Client) TeamMembers(ctx context.Context, slug string) iter.Seq2[Member, error] {
	return paginate[Member](ctx, c, "TeamMembers", call{method: http.MethodGet, pattern: patTeamMembers, args: []string{slug}})
}

// TeamProjects streams the projects a team has access to.
func (c *Client) TeamProjects(ctx context.Context, slug string) iter.Seq2[Project, error] {
	return paginate[Project](ctx, c, "TeamProjects", call{method: http.MethodGet, pattern: patTeamProjects, args: []string{slug}})
}

// ListProjects streams the organization's projects.
func (c *Client) ListProjects(ctx context.Context) iter.Seq2[Project, error] {
	return paginate[Project](ctx, c, "ListProjects", call{method: http.MethodGet, pattern: patProjects})
}

// AddProjectTeam gives a team access to a project (201).
func (c *Client) AddProjectTeam(ctx context.Context, projectSlug, teamSlug string) (err error) {
	ctx, span := c.start(ctx, "AddProjectTeam", attribute.String("sentry.project", projectSlug), attribute.String("sentry.team", teamSlug))
	defer func() { end(span, err) }()
	if _, err := c.do(ctx, call{method: http.MethodPost, pattern: patProjectTeam, args: []string{projectSlug, teamSlug}, idempotent: true}); err != nil {
		return fmt.Errorf("add team %s to project %s: %w", teamSlug, projectSlug, err)
	}
	return nil
}

// RemoveProjectTeam revokes a team's access to a project.
func (c *Client) RemoveProjectTeam(ctx context.Context, projectSlug, teamSlug string) (err error) {
	ctx, span := c.start(ctx, "RemoveProjectTeam", attribute.String("sentry.project", projectSlug), attribute.String("sentry.team", teamSlug))
	defer func() { end(span, err) }()
	if _, err := c.do(ctx, call{method: http.MethodDelete, pattern: patProjectTeam, args: []string{projectSlug, teamSlug}}); err != nil {
		return fmt.Errorf("remove team %s from project %s: %w", teamSlug, projectSlug, err)
	}
	return nil
}
