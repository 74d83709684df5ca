package policy

import (
	"fmt"
	"maps"
	"slices"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Source names what produced one grant: the rule (by name, or rules[i]) and
// the person's attributes that matched it. The default org role has Rule
// "default_org_role" and no Matched.
type Source struct {
	Rule    string            `json:"rule"`
	Index   int               `json:"index"` // position in rules; -1 for the default
	Matched map[string]string `json:"matched,omitempty"`
}

// String is "rule (key=value, …)", for plans and reports.
func (s Source) String() string {
	if len(s.Matched) == 0 {
		return s.Rule
	}
	out := s.Rule + " ("
	for i, k := range slices.Sorted(maps.Keys(s.Matched)) {
		if i > 0 {
			out += ", "
		}
		out += k + "=" + s.Matched[k]
	}
	return out + ")"
}

// Explanation is Evaluate's result with the source of every grant: the rule
// that decided the org role, and for each team the rule that decided its role.
// Rules that matched but lost (a lower org role, a duplicate team) are listed in
// Matched so a reader can see every rule that applied.
type Explanation struct {
	Desired
	OrgRoleFrom Source            `json:"org_role_from"`
	TeamsFrom   map[string]Source `json:"teams_from"`
	Matched     []Source          `json:"matched_rules"`
}

// Explain evaluates p exactly as Evaluate does and names the source of each
// grant. It is for operators (plan, access review, evidence), not the hot path.
func (pol Policy) Explain(p events.Person) Explanation {
	ex := Explanation{
		Desired:     pol.Evaluate(p),
		OrgRoleFrom: Source{Rule: "default_org_role", Index: -1},
		TeamsFrom:   map[string]Source{},
	}
	role := pol.DefaultOrgRole
	teams := map[string]string{}
	for i, r := range pol.Rules {
		if !pol.matches(r, p) {
			continue
		}
		src := pol.source(i, r, p)
		ex.Matched = append(ex.Matched, src)
		if r.OrgRole != "" && OrgRoleRank(r.OrgRole) > OrgRoleRank(role) {
			role = r.OrgRole
			ex.OrgRoleFrom = src
		}
		for _, t := range r.Teams {
			if cur, ok := teams[t.Slug]; !ok || (cur != "admin" && t.Role == "admin") {
				teams[t.Slug] = t.Role
				ex.TeamsFrom[t.Slug] = src
			}
		}
	}
	for slug := range ex.TeamsFrom {
		if _, ok := ex.Teams[slug]; !ok {
			delete(ex.TeamsFrom, slug) // dropped by a billing org role
		}
	}
	return ex
}

func (pol Policy) source(i int, r Rule, p events.Person) Source {
	name := r.Name
	if name == "" {
		name = fmt.Sprintf("rules[%d]", i)
	}
	m := make(map[string]string, len(r.Match))
	for key, want := range r.Match {
		m[key] = pol.matchedValue(p, key, want)
	}
	return Source{Rule: name, Index: i, Matched: m}
}

// matchedValue is the person's value that satisfied key: want.
func (pol Policy) matchedValue(p events.Person, key, want string) string {
	switch key {
	case "group", "groups":
		for _, g := range p.Groups {
			if pol.matchValue(g, want) {
				return g
			}
		}
		return ""
	case "department", "title":
		return ProfileValue(p, key)
	case "email":
		return p.Email
	case "manager_email":
		return p.ManagerEmail
	}
	return p.Attributes[key]
}
