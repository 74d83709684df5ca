package sentry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// requiredScopes are the token scopes the daemon needs (DESIGN "The Sentry token").
var requiredScopes = []string{
	"org:read", "org:write", "member:read", "member:write", "member:admin",
	"team:read", "team:write", "project:read", "project:write",
}

// ErrMissingScopes is returned by Check when the token lacks required scopes.
var ErrMissingScopes = errors.New("sentry: token lacks required scopes")

// CheckResult describes the token and the organization as seen at start.
type CheckResult struct {
	TokenKind TokenKind
	// The token's own membership: implicitly protected.
	Member   *Member
	MemberID string
	UserID   string
	Email    string
	OrgRole  string
	// Scopes are the effective scopes from the organization detail's "access";
	// ScopesKnown is false when they could not be read.
	Scopes      []string
	ScopesKnown bool
	// ScopesFromRole: Scopes are the org role's scopes (from members/me's
	// orgRoleList) because the organization detail was not readable.
	ScopesFromRole bool
	MissingScopes  []string
	// SCIMEnabled is true when scim/v2/Users answers; a 403 means SCIM is not
	// enabled for the org (or the SCIM token is not accepted). SCIMDetail says why.
	SCIMEnabled bool
	SCIMDetail  string
	// RateLimitHeaders is false on self-hosted Sentry (limiter disabled).
	RateLimitHeaders bool
	RateLimit        int
	ConcurrentLimit  int
	// ClockSkew is how far this machine's clock is ahead of Sentry's (its
	// Date header, one-second resolution; request time taken as half the
	// round trip). Rate-limit windows are epoch seconds, and webhook
	// signatures carry timestamps checked to 5 minutes. ClockKnown is false
	// without a Date header.
	ClockSkew  time.Duration
	ClockKnown bool
	// APIBase is where the organization's API calls go: the configured base
	// URL, or the org's region (links.regionUrl of the organization details)
	// when the base is sentry.io; RegionFollowed says which.
	APIBase        string
	RegionFollowed bool
	// Warnings are non-fatal findings, one line each.
	Warnings []string
}

// Check verifies the token at start: its kind (org tokens refused), that it is a
// member of the org (members/me), its role and scopes, whether SCIM is enabled and
// whether Sentry sends rate-limit headers. It returns an error for anything that
// stops the daemon from working; the result is non-nil whenever members/me
// answered.
// MaxClockSkew is the clock difference with Sentry above which Check warns.
const MaxClockSkew = 2 * time.Second

func (c *Client) Check(ctx context.Context) (r *CheckResult, err error) {
	ctx, span := c.start(ctx, "Check")
	defer func() { end(span, err) }()
	r = &CheckResult{TokenKind: KindOf(c.token)}
	if r.TokenKind == TokenOrg {
		return r, ErrOrgToken
	}
	sent := time.Now()
	me, resp, err := c.getMember(ctx, "me")
	if err != nil {
		return nil, fmt.Errorf("check token: members/me: %w", err)
	}
	if d, derr := http.ParseTime(resp.header.Get("Date")); derr == nil {
		// The Date header is truncated to the second: compare with the
		// middle of the exchange, and forgive the truncation.
		mid := sent.Add(time.Since(sent) / 2)
		r.ClockSkew, r.ClockKnown = mid.Sub(d.Add(500*time.Millisecond)), true
		if r.ClockSkew.Abs() > MaxClockSkew {
			r.Warnings = append(r.Warnings, fmt.Sprintf("this machine's clock is %s off Sentry's: rate-limit windows (epoch seconds) and webhook timestamps (5-minute tolerance) depend on it; run NTP", r.ClockSkew.Round(time.Second)))
		}
	}
	r.Member, r.MemberID, r.Email, r.OrgRole = me, me.ID, me.Email, me.OrgRole
	// members/me went through the region lookup already: this reads it back.
	if r.APIBase, r.RegionFollowed, err = c.APIBase(ctx); err != nil {
		return r, fmt.Errorf("check token: %w", err)
	}
	if me.User != nil {
		r.UserID = me.User.ID
		if r.Email == "" {
			r.Email = me.User.Email
		}
	}
	lim := parseLimits(resp.header, time.Now())
	r.RateLimitHeaders, r.RateLimit, r.ConcurrentLimit = lim.Present, lim.Limit, lim.ConcurrentLimit
	switch r.OrgRole {
	case "manager", "owner":
	default:
		r.Warnings = append(r.Warnings, fmt.Sprintf("the token's member has org role %q; removing members needs manager (or owner for owner leavers)", r.OrgRole))
	}

	if org, err := c.GetOrganization(ctx); err == nil && org.Access != nil {
		r.Scopes, r.ScopesKnown = org.Access, true
		r.MissingScopes = missingScopes(org.Access, requiredScopes)
	} else if rs := roleScopes(resp.body, r.OrgRole); rs != nil {
		// The role's scopes bound the token's effective scopes from above.
		r.Scopes, r.ScopesFromRole = rs, true
		r.MissingScopes = missingScopes(rs, requiredScopes)
		r.Warnings = append(r.Warnings, "token scopes not discoverable; checked the role's scopes only")
	} else if err != nil {
		r.Warnings = append(r.Warnings, "scopes unknown: "+err.Error())
	}

	q := url.Values{"count": {"1"}, "startIndex": {"1"}}
	_, serr := c.do(ctx, call{method: http.MethodGet, pattern: patSCIMUsers, query: q, scim: true})
	switch {
	case serr == nil:
		r.SCIMEnabled = true
	case errors.Is(serr, ErrPermission):
		r.SCIMDetail = "SCIM is not enabled for the organization (403)"
	default:
		r.SCIMDetail = serr.Error()
		if c.scimToken != "" && errors.Is(serr, ErrUnauthorized) {
			r.Warnings = append(r.Warnings, "the SCIM token was refused: "+serr.Error())
		}
	}
	if !r.RateLimitHeaders {
		r.Warnings = append(r.Warnings, "no X-Sentry-Rate-Limit headers (self-hosted?): pacing by the default limit only")
	}
	if len(r.MissingScopes) > 0 {
		return r, fmt.Errorf("%w: %s", ErrMissingScopes, strings.Join(r.MissingScopes, " "))
	}
	return r, nil
}

// missingScopes returns the required scopes not granted; x:admin implies x:write
// implies x:read.
func missingScopes(have, want []string) []string {
	granted := map[string]bool{}
	for _, s := range have {
		granted[s] = true
		res, lvl, ok := strings.Cut(s, ":")
		if !ok {
			continue
		}
		switch lvl {
		case "admin":
			granted[res+":write"] = true
			granted[res+":read"] = true
		case "write":
			granted[res+":read"] = true
		}
	}
	var missing []string
	for _, s := range want {
		if !granted[s] {
			missing = append(missing, s)
		}
	}
	return missing
}

// roleScopes reads the scopes of role from a member detail's orgRoleList.
func roleScopes(body []byte, role string) []string {
	var d struct {
		OrgRoleList []struct {
			ID     string   `json:"id"`
			Scopes []string `json:"scopes"`
		} `json:"orgRoleList"`
	}
	if json.Unmarshal(body, &d) != nil {
		return nil
	}
	for _, r := range d.OrgRoleList {
		if r.ID == role && r.Scopes != nil {
			return r.Scopes
		}
	}
	return nil
}
