package sentry

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

const (
	patSCIMUsers  = "/api/0/organizations/{org}/scim/v2/Users"
	patSCIMUser   = "/api/0/organizations/{org}/scim/v2/Users/{member}"
	patSCIMGroups = "/api/0/organizations/{org}/scim/v2/Groups"
	patSCIMGroup  = "/api/0/organizations/{org}/scim/v2/Groups/{team}"
)

// SCIMFilterEq renders a SCIM filter `attr eq "value"` (Sentry accepts exactly one
// such clause; for Users the attribute is ignored and the value matched against
// member and user emails case-insensitively).
func SCIMFilterEq(attr, value string) string {
	return attr + ` eq "` + value + `"`
}

// SCIMUsers streams SCIM Users (members, pending invites included) ordered by
// email. filter is "" or one `userName eq "x"` clause (see SCIMFilterEq).
func (c *Client) SCIMUsers(ctx context.Context, filter string) iter.Seq2[SCIMUser, error] {
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	return paginateSCIM[SCIMUser](ctx, c, "SCIMUsers", call{method: http.MethodGet, pattern: patSCIMUsers, query: q, scim: true}, 0)
}

// SCIMUserPage is one page of a SCIM Users list.
type SCIMUserPage struct {
	TotalResults int
	StartIndex   int
	ItemsPerPage int
	Users        []SCIMUser
}

// SCIMListUsers reads one page (startIndex is 1-based; count ≤ 100).
func (c *Client) SCIMListUsers(ctx context.Context, filter string, startIndex, count int) (p *SCIMUserPage, err error) {
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	if startIndex > 0 {
		q.Set("startIndex", strconv.Itoa(startIndex))
	}
	if count > 0 {
		q.Set("count", strconv.Itoa(count))
	}
	lst, err := fetchSCIMPage[SCIMUser](ctx, c, "SCIMListUsers", 1, call{method: http.MethodGet, pattern: patSCIMUsers, query: q, scim: true})
	if err != nil {
		return nil, fmt.Errorf("list scim users: %w", err)
	}
	return &SCIMUserPage{TotalResults: lst.TotalResults, StartIndex: lst.StartIndex, ItemsPerPage: lst.ItemsPerPage, Users: lst.Resources}, nil
}

// SCIMGetUser reads one SCIM user by member id.
func (c *Client) SCIMGetUser(ctx context.Context, memberID string) (u *SCIMUser, err error) {
	ctx, span := c.start(ctx, "SCIMGetUser", attribute.String("sentry.member_id", memberID))
	defer func() { end(span, err) }()
	resp, err := c.do(ctx, call{method: http.MethodGet, pattern: patSCIMUser, args: []string{memberID}, scim: true})
	if err != nil {
		return nil, fmt.Errorf("get scim user %s: %w", memberID, err)
	}
	u = new(SCIMUser)
	if err := resp.decode(u); err != nil {
		return nil, fmt.Errorf("get scim user %s: %w", memberID, err)
	}
	return u, nil
}

// SCIMCreateUser provisions an invite through SCIM (flagged idp:provisioned;
// Sentry e-mails the invitation). role "" means the org default. An existing
// member is ErrConflict. Not repeated after an ambiguous failure.
func (c *Client) SCIMCreateUser(ctx context.Context, email, role string) (u *SCIMUser, err error) {
	ctx, span := c.start(ctx, "SCIMCreateUser", attribute.String("sentry.org_role", role))
	defer func() { end(span, err) }()
	body := map[string]any{
		"schemas":  []string{scimSchemaUser},
		"userName": email,
		"emails":   []SCIMEmail{{Primary: true, Value: email, Type: "work"}},
		"active":   true,
	}
	if role != "" {
		body["sentryOrgRole"] = role
	}
	resp, err := c.do(ctx, call{method: http.MethodPost, pattern: patSCIMUsers, body: body, scim: true})
	if err != nil {
		return nil, fmt.Errorf("create scim user: %w", err)
	}
	u = new(SCIMUser)
	if err := resp.decode(u); err != nil {
		return nil, fmt.Errorf("create scim user: %w", err)
	}
	return u, nil
}

// SCIMSetUserRole sets the org role through SCIM PUT (marks the member
// idp:role-restricted; "" resets to the default role).
func (c *Client) SCIMSetUserRole(ctx context.Context, memberID, role string) (u *SCIMUser, err error) {
	ctx, span := c.start(ctx, "SCIMSetUserRole", attribute.String("sentry.member_id", memberID), attribute.String("sentry.org_role", role))
	defer func() { end(span, err) }()
	body := map[string]any{"schemas": []string{scimSchemaUser}, "sentryOrgRole": role}
	resp, err := c.do(ctx, call{method: http.MethodPut, pattern: patSCIMUser, args: []string{memberID}, body: body, scim: true})
	if err != nil {
		return nil, fmt.Errorf("set scim role of %s: %w", memberID, err)
	}
	u = new(SCIMUser)
	if err := resp.decode(u); err != nil {
		return nil, fmt.Errorf("set scim role of %s: %w", memberID, err)
	}
	return u, nil
}

// SCIMDeactivateUser sends PATCH active=false. In Sentry this permanently deletes
// the member (204); a second call is ErrNotFound.
func (c *Client) SCIMDeactivateUser(ctx context.Context, memberID string) (err error) {
	ctx, span := c.start(ctx, "SCIMDeactivateUser", attribute.String("sentry.member_id", memberID))
	defer func() { end(span, err) }()
	body := map[string]any{
		"schemas":    []string{scimSchemaPatchOp},
		"Operations": []map[string]any{{"op": "replace", "path": "active", "value": false}},
	}
	if _, err := c.do(ctx, call{method: http.MethodPatch, pattern: patSCIMUser, args: []string{memberID}, body: body, scim: true, idempotent: true, removal: true}); err != nil {
		return fmt.Errorf("deactivate scim user %s: %w", memberID, err)
	}
	return nil
}

// SCIMDeleteUser deletes a member through SCIM (DELETE /scim/v2/Users/{id}, 204),
// the way to remove idp:provisioned members. 404 is ErrNotFound (already gone).
func (c *Client) SCIMDeleteUser(ctx context.Context, memberID string) (err error) {
	ctx, span := c.start(ctx, "SCIMDeleteUser", attribute.String("sentry.member_id", memberID))
	defer func() { end(span, err) }()
	if _, err := c.do(ctx, call{method: http.MethodDelete, pattern: patSCIMUser, args: []string{memberID}, scim: true, removal: true}); err != nil {
		return fmt.Errorf("delete scim user %s: %w", memberID, err)
	}
	return nil
}

// SCIMGroups streams SCIM Groups (teams) ordered by slug. filter is "" or
// `displayName eq "Name"` (Sentry matches the slugified name). excludeMembers
// drops the member lists.
func (c *Client) SCIMGroups(ctx context.Context, filter string, excludeMembers bool) iter.Seq2[SCIMGroup, error] {
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	if excludeMembers {
		q.Set("excludedAttributes", "members")
	}
	return paginateSCIM[SCIMGroup](ctx, c, "SCIMGroups", call{method: http.MethodGet, pattern: patSCIMGroups, query: q, scim: true}, 0)
}

// SCIMGetGroup reads one SCIM group by team id (newer Sentry also accepts a slug).
func (c *Client) SCIMGetGroup(ctx context.Context, teamID string) (g *SCIMGroup, err error) {
	ctx, span := c.start(ctx, "SCIMGetGroup", attribute.String("sentry.team_id", teamID))
	defer func() { end(span, err) }()
	resp, err := c.do(ctx, call{method: http.MethodGet, pattern: patSCIMGroup, args: []string{teamID}, scim: true})
	if err != nil {
		return nil, fmt.Errorf("get scim group %s: %w", teamID, err)
	}
	g = new(SCIMGroup)
	if err := resp.decode(g); err != nil {
		return nil, fmt.Errorf("get scim group %s: %w", teamID, err)
	}
	return g, nil
}

// PrimaryEmail returns the user's primary email (userName as fallback).
func (u SCIMUser) PrimaryEmail() string {
	for _, e := range u.Emails {
		if e.Primary && e.Value != "" {
			return e.Value
		}
	}
	if len(u.Emails) > 0 && u.Emails[0].Value != "" {
		return u.Emails[0].Value
	}
	return strings.TrimSpace(u.UserName)
}
