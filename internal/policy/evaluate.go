package policy

import (
	"regexp"
	"slices"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Desired is the Sentry access policy grants one active person.
type Desired struct {
	OrgRole string            `json:"org_role"`
	Teams   map[string]string `json:"teams"` // slug → team role ("" = the org role's minimum)
}

// OrgRoleRank orders org roles; unknown roles rank lowest.
func OrgRoleRank(role string) int {
	switch role {
	case "billing":
		return 0
	case "member":
		return 1
	case "admin":
		return 2
	case "manager":
		return 3
	case "owner":
		return 4
	}
	return -1
}

// MinimumTeamRole is the team role every team member has by virtue of org role:
// Sentry stores team roles at or below it as null.
func MinimumTeamRole(orgRole string) string {
	if OrgRoleRank(orgRole) >= OrgRoleRank("admin") {
		return "admin"
	}
	return "contributor"
}

// EffectiveTeamRole is the team role a member really has: the stored role, or the
// org role's minimum when that is higher or nothing is stored.
func EffectiveTeamRole(orgRole, stored string) string {
	min := MinimumTeamRole(orgRole)
	if stored == "admin" || min == "admin" {
		return "admin"
	}
	return "contributor"
}

// Evaluate returns the access the policy grants p: every matching rule applies,
// the highest org role wins, and a team granted twice keeps its highest role.
func (pol Policy) Evaluate(p events.Person) Desired {
	d := Desired{OrgRole: pol.DefaultOrgRole, Teams: map[string]string{}}
	for _, r := range pol.Rules {
		if !pol.matches(r, p) {
			continue
		}
		if r.OrgRole != "" && OrgRoleRank(r.OrgRole) > OrgRoleRank(d.OrgRole) {
			d.OrgRole = r.OrgRole
		}
		for _, t := range r.Teams {
			if cur, ok := d.Teams[t.Slug]; !ok || (cur != "admin" && t.Role == "admin") {
				d.Teams[t.Slug] = t.Role
			}
		}
	}
	if d.OrgRole == "billing" {
		d.Teams = map[string]string{}
	}
	return d
}

// Managed reports whether the daemon may remove people from team slug.
func (pol Policy) Managed(slug string) bool { return slices.Contains(pol.ManagedTeams, slug) }

// Protected reports whether email matches the protected list (exact,
// case-insensitive, or a "re:" pattern).
func (pol Policy) IsProtected(email string) bool {
	for _, p := range pol.Protected {
		if expr, ok := strings.CutPrefix(p, "re:"); ok {
			if re := pol.regexp(expr); re != nil && re.MatchString(email) {
				return true
			}
			continue
		}
		if strings.EqualFold(strings.TrimSpace(p), email) {
			return true
		}
	}
	return false
}

// regexp returns the compiled pattern (compiled once at Parse; Default has none).
func (pol Policy) regexp(expr string) *regexp.Regexp {
	if re, ok := pol.compiled[expr]; ok {
		return re
	}
	re, _ := regexp.Compile(expr)
	return re
}

func (pol Policy) matches(r Rule, p events.Person) bool {
	for key, want := range r.Match {
		if !pol.matchKey(p, key, want) {
			return false
		}
	}
	return true
}

// ProfileValue is the person's department or title as rules see it: the HR
// value when the directory has one, else the identity provider's (SCIM
// enterprise extension, Okta profile), so department: and title: rules work
// for shops whose only source is an IdP. The scim.* and okta.* attributes stay
// matchable under their own names too.
func ProfileValue(p events.Person, key string) string {
	// The IdP attributes, in order of preference: the SCIM enterprise
	// extension (scimserver), then the Okta profile (sources/okta).
	v, idp := p.Department, []string{"scim.department", "okta.department"}
	if key == "title" {
		v, idp = p.Title, []string{"scim.title", "okta.title"}
	}
	if v != "" {
		return v
	}
	for _, k := range idp {
		if a := p.Attributes[k]; a != "" {
			return a
		}
	}
	return ""
}

func (pol Policy) matchKey(p events.Person, key, want string) bool {
	var values []string
	switch key {
	case "department", "title":
		values = []string{ProfileValue(p, key)}
	case "group", "groups":
		values = p.Groups
	case "email":
		values = []string{p.Email}
	case "manager_email":
		values = []string{p.ManagerEmail}
	default:
		v, ok := p.Attributes[key]
		if !ok {
			return false
		}
		values = []string{v}
	}
	for _, v := range values {
		if pol.matchValue(v, want) {
			return true
		}
	}
	return false
}

func (pol Policy) matchValue(v, want string) bool {
	if expr, ok := strings.CutPrefix(want, "re:"); ok {
		re := pol.regexp(expr)
		return re != nil && re.MatchString(v)
	}
	return strings.EqualFold(v, want)
}
