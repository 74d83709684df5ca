package sentry

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

const (
	patMembers    = "/api/0/organizations/{org}/members/"
	patMember     = "/api/0/organizations/{org}/members/{member}/"
	patMemberTeam = "/api/0/organizations/{org}/members/{member}/teams/{team}/"
)

// Me returns the token's own membership (GET members/me/).
func (c *Client) Me(ctx context.Context) (m *Member, err error) {
	ctx, span := c.start(ctx, "Me")
	defer func() { end(span, err) }()
	m, _, err = c.getMember(ctx, "me")
	if err != nil {
		return nil, fmt.Errorf("get own membership: %w", err)
	}
	return m, nil
}

// GetMember returns one member with its teams and team roles. Pending invites are
// included; invite requests are 404 (ErrNotFound).
func (c *Client) GetMember(ctx context.Context, id string) (m *Member, err error) {
	ctx, span := c.start(ctx, "GetMember", attribute.String("sentry.member_id", id))
	defer func() { end(span, err) }()
	m, _, err = c.getMember(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get member %s: %w", id, err)
	}
	return m, nil
}

func (c *Client) getMember(ctx context.Context, id string) (*Member, *response, error) {
	resp, err := c.do(ctx, call{method: http.MethodGet, pattern: patMember, args: []string{id}})
	if err != nil {
		return nil, nil, err
	}
	// Decoded into the wire shape directly: through Member.UnmarshalJSON the
	// detail body (~5 KB with the role lists) would be scanned twice more.
	var w memberJSON
	if err := resp.decode(&w); err != nil {
		return nil, resp, err
	}
	m := w.member()
	return &m, resp, nil
}

// EmailQuery renders an email:<addr> search token, quoting it when needed.
func emailQuery(email string) string {
	if strings.ContainsAny(email, " \t\"") {
		return `email:"` + strings.ReplaceAll(email, `"`, `\"`) + `"`
	}
	return "email:" + email
}

// FindMembersByEmail returns the members (and pending invites) whose invite email
// or user email equals email, case-insensitively. Sentry's email: search may match
// more loosely; anything but an exact match is dropped, and a user's secondary
// addresses never count. More than one result means the identity is disputed.
func (c *Client) FindMembersByEmail(ctx context.Context, email string) (ms []Member, err error) {
	ctx, span := c.start(ctx, "FindMembersByEmail")
	defer func() { end(span, err) }()
	email = strings.TrimSpace(email)
	if email == "" {
		return nil, fmt.Errorf("find members by email: empty email")
	}
	// Sentry's email: token is an exact (case-sensitive) IN match on the member
	// and user email; ask for the address as given and lower-cased.
	q := emailQuery(email)
	if low := strings.ToLower(email); low != email {
		q += " " + emailQuery(low)
	}
	if ms, err = c.matchMembers(ctx, q, email); err != nil {
		return nil, err
	}
	if len(ms) == 0 && !strings.ContainsAny(email, " \t\"") {
		// Stored with other capitals: free text is a case-insensitive contains
		// search; the exact comparison below still decides.
		span.AddEvent("sentry.email_fallback")
		if ms, err = c.matchMembers(ctx, email, email); err != nil {
			return nil, err
		}
	}
	span.SetAttributes(attribute.Int("sentry.matches", len(ms)))
	return ms, nil
}

func (c *Client) matchMembers(ctx context.Context, query, email string) ([]Member, error) {
	var ms []Member
	for m, err := range c.listMembers(ctx, query) {
		if err != nil {
			return nil, fmt.Errorf("find members by email: %w", err)
		}
		if MatchesEmail(m, email) {
			ms = append(ms, m)
		}
	}
	return ms, nil
}

// MatchesEmail reports whether m's invite email or its user's primary email equals
// email case-insensitively (the identity rule; never a prefix or a secondary
// address).
func MatchesEmail(m Member, email string) bool {
	email = strings.TrimSpace(email)
	if email == "" {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(m.Email), email) {
		return true
	}
	return m.User != nil && strings.EqualFold(strings.TrimSpace(m.User.Email), email)
}

// ListMembers streams the organization's members and pending invites, ordered by
// id, 100 per request. query uses Sentry's search tokens (email:, id:, user.id:,
// role:, isInvited:, ssoLinked:, free text); "" lists everyone. The iterator
// yields a non-nil error at most once, as its last element.
func (c *Client) ListMembers(ctx context.Context, query string) iter.Seq2[Member, error] {
	return c.listMembers(ctx, query)
}

func (c *Client) listMembers(ctx context.Context, query string) iter.Seq2[Member, error] {
	q := url.Values{}
	if query != "" {
		q.Set("query", query)
	}
	return paginate[Member](ctx, c, "ListMembers", call{method: http.MethodGet, pattern: patMembers, query: q})
}

// DeleteMember removes a member or pending invite through the REST API (204).
// 404 is ErrNotFound (already gone); 403 with ErrIdPManaged means the member must
// be removed through SCIM; ErrLastOwner and ErrInsufficientRole need a human.
func (c *Client) DeleteMember(ctx context.Context, id string) (err error) {
	ctx, span := c.start(ctx, "DeleteMember", attribute.String("sentry.member_id", id))
	defer func() { end(span, err) }()
	if _, err := c.do(ctx, call{method: http.MethodDelete, pattern: patMember, args: []string{id}, removal: true}); err != nil {
		return fmt.Errorf("delete member %s: %w", id, err)
	}
	return nil
}

// InviteRequest is the body of an invitation.
type InviteRequest struct {
	Email     string     `json:"email"`
	OrgRole   string     `json:"orgRole,omitempty"`
	TeamRoles []TeamRole `json:"teamRoles,omitempty"`
	// SendInvite defaults to true on Sentry's side.
	SendInvite *bool `json:"sendInvite,omitempty"`
}

// InviteMember creates a pending invite (POST members/). It is not repeated after
// an ambiguous failure: re-read with FindMembersByEmail first. Daily invite quotas
// answer ErrInviteQuota (never retried); an existing member or invite is a 400
// (ErrBadRequest) whose Detail says so.
func (c *Client) InviteMember(ctx context.Context, req InviteRequest) (m *Member, err error) {
	ctx, span := c.start(ctx, "InviteMember", attribute.String("sentry.org_role", req.OrgRole))
	defer func() { end(span, err) }()
	if req.Email == "" {
		return nil, fmt.Errorf("invite member: empty email")
	}
	resp, err := c.do(ctx, call{method: http.MethodPost, pattern: patMembers, body: req})
	if err != nil {
		return nil, fmt.Errorf("invite member: %w", err)
	}
	m = new(Member)
	if err := resp.decode(m); err != nil {
		return nil, fmt.Errorf("invite member: %w", err)
	}
	return m, nil
}

type memberUpdate struct {
	OrgRole   string     `json:"orgRole,omitempty"`
	TeamRoles []TeamRole `json:"teamRoles"`
}

// UpdateMemberRole sets a member's org role (PUT members/{id}/). Sentry replaces
// the member's whole team set with teamRoles, so pass the set just read (nil is
// sent as [] and removes the member from every team).
func (c *Client) UpdateMemberRole(ctx context.Context, id, orgRole string, teamRoles []TeamRole) (m *Member, err error) {
	ctx, span := c.start(ctx, "UpdateMemberRole",
		attribute.String("sentry.member_id", id), attribute.String("sentry.org_role", orgRole))
	defer func() { end(span, err) }()
	if orgRole == "" {
		return nil, fmt.Errorf("update member %s: empty org role", id)
	}
	if teamRoles == nil {
		teamRoles = []TeamRole{}
	}
	m, err = c.putMember(ctx, id, memberUpdate{OrgRole: orgRole, TeamRoles: teamRoles})
	if err != nil {
		return nil, fmt.Errorf("update member %s: %w", id, err)
	}
	return m, nil
}

// ReinviteMember re-sends a pending invite (regenerate makes a new link, for
// expired invites; it needs member:admin). Sentry refuses a reinvite that
// carries any other field ("You cannot modify member details when resending an
// invitation"), so the body is only reinvite and regenerate; the invite's role
// and teams are left as they are.
func (c *Client) ReinviteMember(ctx context.Context, id string, regenerate bool) (m *Member, err error) {
	ctx, span := c.start(ctx, "ReinviteMember", attribute.String("sentry.member_id", id))
	defer func() { end(span, err) }()
	resp, err := c.do(ctx, call{method: http.MethodPut, pattern: patMember, args: []string{id},
		body: reinviteBody{Reinvite: true, Regenerate: regenerate}})
	if err != nil {
		return nil, fmt.Errorf("reinvite member %s: %w", id, err)
	}
	m = new(Member)
	if len(resp.body) > 0 {
		if err := resp.decode(m); err != nil {
			return nil, fmt.Errorf("reinvite member %s: %w", id, err)
		}
	}
	return m, nil
}

type reinviteBody struct {
	Reinvite   bool `json:"reinvite"`
	Regenerate bool `json:"regenerate,omitempty"`
}

func (c *Client) putMember(ctx context.Context, id string, body memberUpdate) (*Member, error) {
	resp, err := c.do(ctx, call{method: http.MethodPut, pattern: patMember, args: []string{id}, body: body})
	if err != nil {
		return nil, err
	}
	var m Member
	if len(resp.body) > 0 {
		if err := resp.decode(&m); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// AddMemberToTeam adds a member to a team. added is true on 201 and false on 204
// (already a member). A 202 means Sentry created an access request instead: that
// is an *APIError matching ErrAccessRequest. IdP-provisioned teams answer
// ErrIdPManaged.
func (c *Client) AddMemberToTeam(ctx context.Context, memberID, teamSlug string) (added bool, err error) {
	ctx, span := c.start(ctx, "AddMemberToTeam",
		attribute.String("sentry.member_id", memberID), attribute.String("sentry.team", teamSlug))
	defer func() { end(span, err) }()
	cl := call{method: http.MethodPost, pattern: patMemberTeam, args: []string{memberID, teamSlug}, idempotent: true}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return false, fmt.Errorf("add member %s to team %s: %w", memberID, teamSlug, err)
	}
	switch resp.status {
	case http.StatusAccepted:
		p, _ := c.path(cl)
		return false, fmt.Errorf("add member %s to team %s: %w", memberID, teamSlug,
			newAPIError(cl.method, cl.pattern, p, resp.status, resp.body))
	case http.StatusNoContent:
		return false, nil
	}
	return true, nil
}

// RemoveMemberFromTeam removes a member from a team (DELETE; Sentry answers 200
// also when the member was not on it).
func (c *Client) RemoveMemberFromTeam(ctx context.Context, memberID, teamSlug string) (err error) {
	ctx, span := c.start(ctx, "RemoveMemberFromTeam",
		attribute.String("sentry.member_id", memberID), attribute.String("sentry.team", teamSlug))
	defer func() { end(span, err) }()
	if _, err := c.do(ctx, call{method: http.MethodDelete, pattern: patMemberTeam, args: []string{memberID, teamSlug}}); err != nil {
		return fmt.Errorf("remove member %s from team %s: %w", memberID, teamSlug, err)
	}
	return nil
}

// SetTeamRole sets a member's team role ("contributor" or "admin"). It returns the
// stored role: nil when Sentry stored it as implied by the org role.
func (c *Client) SetTeamRole(ctx context.Context, memberID, teamSlug, role string) (stored *string, err error) {
	ctx, span := c.start(ctx, "SetTeamRole",
		attribute.String("sentry.member_id", memberID), attribute.String("sentry.team", teamSlug),
		attribute.String("sentry.team_role", role))
	defer func() { end(span, err) }()
	resp, err := c.do(ctx, call{method: http.MethodPut, pattern: patMemberTeam, args: []string{memberID, teamSlug},
		body: map[string]string{"teamRole": role}})
	if err != nil {
		return nil, fmt.Errorf("set team role of member %s in %s: %w", memberID, teamSlug, err)
	}
	var out struct {
		IsActive bool    `json:"isActive"`
		TeamRole *string `json:"teamRole"`
	}
	if len(resp.body) > 0 {
		if err := resp.decode(&out); err != nil {
			return nil, fmt.Errorf("set team role of member %s in %s: %w", memberID, teamSlug, err)
		}
	}
	return out.TeamRole, nil
}
