package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// Policy is the whole policy file. Unknown keys are errors.
type Policy struct {
	Organization   string     `yaml:"organization"`
	Protected      []string   `yaml:"protected"`
	DefaultOrgRole string     `yaml:"default_org_role"`
	Rules          []Rule     `yaml:"rules"`
	ManagedTeams   []string   `yaml:"managed_teams"`
	Teams          []TeamSpec `yaml:"teams"`
	Leaver         Leaver     `yaml:"leaver"`
	Suspend        string     `yaml:"suspend"`
	Brakes         Brakes     `yaml:"brakes"`
	Reconcile      Reconcile  `yaml:"reconcile"`
	// OutOfBand says what convergence does with changes someone made in
	// Sentry by hand, per kind (the audit-log follower names them).
	OutOfBand OutOfBand `yaml:"out_of_band"`

	// Scheduled jobs (hygiene.go).
	TokenHygiene TokenHygiene `yaml:"token_hygiene"`
	SSO          SSO          `yaml:"sso"`
	Invites      Invites      `yaml:"invites"`

	compiled map[string]*regexp.Regexp // "re:" patterns, compiled by Parse
}

// Rule grants an org role and teams to people its match selects.
type Rule struct {
	// Name is an optional label shown wherever a grant is explained (plan,
	// access review); unnamed rules are shown as rules[i].
	Name    string            `yaml:"name"`
	Match   map[string]string `yaml:"match"`
	OrgRole string            `yaml:"org_role"`
	Teams   []TeamGrant       `yaml:"teams"`
}

// TeamGrant is a team membership with an optional team role.
type TeamGrant struct {
	Slug string `yaml:"slug"`
	Role string `yaml:"role"`
}

// TeamSpec declares a team and its projects (team structure as code).
type TeamSpec struct {
	Slug     string   `yaml:"slug"`
	Name     string   `yaml:"name"`
	Projects []string `yaml:"projects"`
}

// Leaver options.
type Leaver struct {
	OrgTokens string `yaml:"org_tokens"` // revoke | report
}

// Brakes on event-driven removals.
type Brakes struct {
	MaxEventRemovalsPerMinute int `yaml:"max_event_removals_per_minute"`
	// Approvals is how many distinct named operators must approve before held
	// removals are released: 1 (default) or 2. With 2, the process refuses to
	// start unless at least two named operator tokens are configured.
	Approvals int `yaml:"approvals"`
}

// Reconcile options.
type Reconcile struct {
	Schedule        string  `yaml:"schedule"`
	Orphans         string  `yaml:"orphans"` // report | remove
	MaxRemovals     int     `yaml:"max_removals"`
	MaxRemovalRatio float64 `yaml:"max_removal_ratio"`
}

// Out-of-band actions: undo the change, keep it and alert, or keep it and
// record it as accepted.
const (
	OutOfBandRevert = "revert"
	OutOfBandReport = "report"
	OutOfBandAdopt  = "adopt"
)

// OutOfBand chooses, per kind of hand-made change, what convergence does with
// it (defaults: revert). ManagedTeams covers team memberships and team roles
// the policy decides (managed teams and teams granted by rules), OrgRole the
// org role, Leavers a leaver (or suspended person) invited or added again.
// Leavers cannot be adopted: a terminated person's access is never accepted.
type OutOfBand struct {
	ManagedTeams string `yaml:"managed_teams"` // revert | report | adopt
	OrgRole      string `yaml:"org_role"`      // revert | report | adopt
	Leavers      string `yaml:"leavers"`       // revert | report
}

// Default is the policy used when JML_POLICY_FILE is unset.
func Default() Policy {
	p := Policy{}
	p.setDefaults()
	return p
}

func (p *Policy) setDefaults() {
	if p.DefaultOrgRole == "" {
		p.DefaultOrgRole = "member"
	}
	if p.Leaver.OrgTokens == "" {
		p.Leaver.OrgTokens = "report"
	}
	if p.Suspend == "" {
		p.Suspend = "remove"
	}
	if p.Brakes.MaxEventRemovalsPerMinute == 0 {
		p.Brakes.MaxEventRemovalsPerMinute = 30
	}
	if p.Brakes.Approvals == 0 {
		p.Brakes.Approvals = 1
	}
	if p.Reconcile.Orphans == "" {
		p.Reconcile.Orphans = "report"
	}
	if p.Reconcile.MaxRemovals == 0 {
		p.Reconcile.MaxRemovals = 25
	}
	if p.Reconcile.MaxRemovalRatio == 0 {
		p.Reconcile.MaxRemovalRatio = 0.10
	}
	for _, f := range []*string{&p.OutOfBand.ManagedTeams, &p.OutOfBand.OrgRole, &p.OutOfBand.Leavers} {
		if *f == "" {
			*f = OutOfBandRevert
		}
	}
}

// Load reads and validates the policy file at path.
func Load(path string) (Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Policy{}, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, b)
}

// Error is a validation error with its position.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Msg)
}

// Parse decodes and validates a policy; name is used in error messages.
func Parse(name string, b []byte) (Policy, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return Policy{}, fmt.Errorf("policy %s: %w", name, err)
	}
	p.setDefaults()
	line := func(path ...string) int { return lineOf(&root, path) }
	fail := func(field string, path []string, format string, args ...any) error {
		return &Error{File: name, Line: line(path...), Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if err := checkOrgRole(p.DefaultOrgRole); err != nil {
		return Policy{}, fail("default_org_role", []string{"default_org_role"}, "%v", err)
	}
	p.compiled = map[string]*regexp.Regexp{}
	for i, pat := range p.Protected {
		if expr, ok := strings.CutPrefix(pat, "re:"); ok {
			re, err := regexp.Compile(expr)
			if err != nil {
				return Policy{}, fail(fmt.Sprintf("protected[%d]", i), []string{"protected", fmt.Sprint(i)}, "bad pattern: %v", err)
			}
			p.compiled[expr] = re
		}
	}
	for i, r := range p.Rules {
		path := []string{"rules", fmt.Sprint(i)}
		if len(r.Match) == 0 {
			return Policy{}, fail(fmt.Sprintf("rules[%d].match", i), path, "a rule needs at least one match key")
		}
		for k, v := range r.Match {
			if expr, ok := strings.CutPrefix(v, "re:"); ok {
				re, err := regexp.Compile(expr)
				if err != nil {
					return Policy{}, fail(fmt.Sprintf("rules[%d].match.%s", i, k), append(path, "match", k), "bad pattern: %v", err)
				}
				p.compiled[expr] = re
			}
		}
		if r.OrgRole != "" {
			if err := checkOrgRole(r.OrgRole); err != nil {
				return Policy{}, fail(fmt.Sprintf("rules[%d].org_role", i), append(path, "org_role"), "%v", err)
			}
			// The highest org role wins, starting from the default: a rule
			// granting a lower one can never win, so it is refused rather
			// than silently ignored.
			if OrgRoleRank(r.OrgRole) < OrgRoleRank(p.DefaultOrgRole) {
				return Policy{}, fail(fmt.Sprintf("rules[%d].org_role", i), append(path, "org_role"),
					"%s ranks below default_org_role %s (billing < member < manager; the highest role wins), so this rule can never grant it; "+
						"to give %s to the people it matches, set default_org_role: %s and grant the higher role by rules",
					r.OrgRole, p.DefaultOrgRole, r.OrgRole, r.OrgRole)
			}
		}
		for j, t := range r.Teams {
			tpath := append(append([]string{}, path...), "teams", fmt.Sprint(j))
			if t.Slug == "" {
				return Policy{}, fail(fmt.Sprintf("rules[%d].teams[%d].slug", i, j), tpath, "required")
			}
			if t.Role != "" && t.Role != "contributor" && t.Role != "admin" {
				return Policy{}, fail(fmt.Sprintf("rules[%d].teams[%d].role", i, j), append(tpath, "role"), "team role %q: want contributor or admin", t.Role)
			}
			if r.OrgRole == "billing" {
				return Policy{}, fail(fmt.Sprintf("rules[%d].teams", i), append(path, "teams"), "the billing role cannot have team-level permissions")
			}
		}
	}
	if p.Leaver.OrgTokens != "revoke" && p.Leaver.OrgTokens != "report" {
		return Policy{}, fail("leaver.org_tokens", []string{"leaver", "org_tokens"}, "%q: want revoke or report", p.Leaver.OrgTokens)
	}
	if p.Suspend != "remove" && p.Suspend != "strip" {
		return Policy{}, fail("suspend", []string{"suspend"}, "%q: want remove or strip", p.Suspend)
	}
	for _, f := range []struct {
		key, val string
		adopt    bool
	}{{"managed_teams", p.OutOfBand.ManagedTeams, true}, {"org_role", p.OutOfBand.OrgRole, true}, {"leavers", p.OutOfBand.Leavers, false}} {
		switch {
		case f.val == OutOfBandRevert || f.val == OutOfBandReport || (f.adopt && f.val == OutOfBandAdopt):
		case f.adopt:
			return Policy{}, fail("out_of_band."+f.key, []string{"out_of_band", f.key}, "%q: want revert, report or adopt", f.val)
		default:
			return Policy{}, fail("out_of_band."+f.key, []string{"out_of_band", f.key}, "%q: want revert or report (a leaver's access is never adopted)", f.val)
		}
	}
	if p.Reconcile.Orphans != "report" && p.Reconcile.Orphans != "remove" {
		return Policy{}, fail("reconcile.orphans", []string{"reconcile", "orphans"}, "%q: want report or remove", p.Reconcile.Orphans)
	}
	if sch := p.Reconcile.Schedule; sch != "" {
		if err := checkSchedule(sch); err != nil {
			return Policy{}, fail("reconcile.schedule", []string{"reconcile", "schedule"}, "%q: %v", sch, err)
		}
	}
	if p.Reconcile.MaxRemovalRatio < 0 || p.Reconcile.MaxRemovalRatio > 1 {
		return Policy{}, fail("reconcile.max_removal_ratio", []string{"reconcile", "max_removal_ratio"}, "must be between 0 and 1")
	}
	if p.Brakes.MaxEventRemovalsPerMinute < 0 || p.Reconcile.MaxRemovals < 0 {
		return Policy{}, fail("brakes", []string{"brakes"}, "limits must not be negative")
	}
	if p.Brakes.Approvals != 1 && p.Brakes.Approvals != 2 {
		return Policy{}, fail("brakes.approvals", []string{"brakes", "approvals"}, "%d: want 1 or 2", p.Brakes.Approvals)
	}
	if err := p.validateExtensions(name, &root); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func checkOrgRole(r string) error {
	switch r {
	case "member", "manager", "billing":
		return nil
	case "owner":
		return errors.New(`"owner" is never granted by the daemon`)
	case "admin":
		return errors.New(`"admin" is retired in Sentry and can no longer be assigned`)
	}
	return fmt.Errorf("unknown org role %q (want member, manager or billing)", r)
}

// lineOf finds the line of the node at path (map keys and sequence indexes).
func lineOf(n *yaml.Node, path []string) int {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case yaml.SequenceNode:
			var idx int
			if _, err := fmt.Sscan(p, &idx); err != nil || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		default:
			return line
		}
	}
	return line
}

// checkSchedule accepts the cron expressions the scheduler runs: five fields
// (minute first), six (seconds first) or a descriptor such as @hourly.
func checkSchedule(expr string) error {
	fields := cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor
	if len(strings.Fields(expr)) == 6 {
		fields |= cron.Second
	}
	if _, err := cron.NewParser(fields).Parse(expr); err != nil {
		return fmt.Errorf("not a cron schedule (5 fields, or 6 with seconds first): %w", err)
	}
	return nil
}
