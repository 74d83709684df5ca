package converge

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// Actions, as printed by `jml plan` and stored in evidence.
const (
	ActInvite       = "invite"
	ActReinvite     = "reinvite"
	ActSetOrgRole   = "set_org_role"
	ActAddTeam      = "add_team"
	ActRemoveTeam   = "remove_team"
	ActSetTeamRole  = "set_team_role"
	ActRemoveMember = "remove_member"
	ActDeleteInvite = "delete_invite"
	ActRevokeToken  = "revoke_token"
	ActReportToken  = "report_token"
)

// Step is one action of a plan and, once applied, its result.
type Step struct {
	Action   string   `json:"action"`
	MemberID string   `json:"member_id,omitempty"`
	Email    string   `json:"email,omitempty"`
	Team     string   `json:"team,omitempty"`
	Role     string   `json:"role,omitempty"`
	From     string   `json:"from,omitempty"`
	Teams    []string `json:"teams,omitempty"` // invite: team slugs (roles in TeamRoles)
	// FromTeams are a pending invite's teams before the step (set_org_role on
	// an invite sets its whole team set): what the PUT really changes.
	FromTeams []string `json:"from_teams,omitempty"`
	// Invite says the step changes a pending invite, not a member.
	Invite  bool   `json:"invite,omitempty"`
	TokenID string `json:"token_id,omitempty"`
	Token   string `json:"token,omitempty"` // token name
	Via     string `json:"via,omitempty"`   // rest | scim
	// Why says why a step is planned when the policy alone does not (a
	// rehire's snapshot team role restored after acceptance).
	Why    string `json:"why,omitempty"`
	Result string `json:"result,omitempty"`
	At     string `json:"at,omitempty"`

	teamRoles []sentry.TeamRole
	// regrant: an invite re-granting the access snapshot taken then.
	regrant time.Time
}

// Describe says what the step changes, in words: "team payments removed",
// "org role member → manager"; for a pending invite's PUT, only what
// differs (teams removed or added, the role when it changes).
func (s Step) Describe() string {
	switch s.Action {
	case ActInvite:
		out := "invite as " + s.Role
		if len(s.Teams) > 0 {
			out += " to teams " + strings.Join(s.Teams, ", ")
		}
		return out
	case ActReinvite:
		return "re-send the expired invite"
	case ActSetOrgRole:
		var parts []string
		if s.From != s.Role {
			parts = append(parts, "org role "+s.From+" → "+s.Role)
		}
		if s.Invite {
			for _, t := range s.FromTeams {
				if !slices.Contains(s.Teams, t) {
					parts = append(parts, "team "+t+" removed")
				}
			}
			for _, t := range s.Teams {
				if !slices.Contains(s.FromTeams, t) {
					parts = append(parts, "team "+t+" added")
				}
			}
			if len(parts) == 0 {
				parts = append(parts, "team roles set")
			}
			return "pending invite: " + strings.Join(parts, ", ")
		}
		return strings.Join(parts, ", ")
	case ActAddTeam:
		return "team " + s.Team + " added"
	case ActRemoveTeam:
		return "team " + s.Team + " removed"
	case ActSetTeamRole:
		if s.Why != "" {
			return "team " + s.Team + " role " + s.From + " → " + s.Role + " (" + s.Why + ")"
		}
		return "team " + s.Team + " role " + s.From + " → " + s.Role
	case ActRemoveMember:
		return "member removed from the organization (role " + s.Role + ", via " + s.Via + ")"
	case ActDeleteInvite:
		return "pending invite deleted"
	case ActRevokeToken:
		return "org auth token " + s.Token + " revoked"
	case ActReportToken:
		return "org auth token " + s.Token + " reported (not revoked)"
	}
	return s.Action
}

// Removal reports whether the step takes access away (counted by the brakes).
func (s Step) Removal() bool { return s.Action == ActRemoveMember || s.Action == ActDeleteInvite }

// teamInfo is what planning needs to know about a team.
type teamInfo struct {
	exists bool
	idp    bool
}

// planInput is everything planning reads; planning itself does no I/O.
type planInput struct {
	person  events.Person
	desired policy.Desired
	pol     policy.Policy
	member  *sentry.Member // detail (teams, teamRoles); nil = no member or invite
	teams   func(slug string) teamInfo
	selfID  string
	selfRol string
	// rehire: the access snapshot to re-grant when there is no member.
	rehire *policy.Desired
	// rehireAt: when that snapshot was taken.
	rehireAt time.Time
	// restore: a rehire's snapshot team roles still owed to the accepted member.
	restore *Restore
}

// planResult is a plan before it is applied.
type planResult struct {
	Outcome Outcome
	Reason  string
	Steps   []Step
	Notes   []string
	// rehired: the plan re-grants a snapshot; policy is applied right after.
	rehired bool
	// restore: the rehire restoration this plan settles (see RehireRestore).
	restore *Restore
}

// planActive computes the steps that give an active person exactly the desired
// access: risky access first (org role down, teams out), then additions.
func planActive(in planInput) planResult {
	email := in.person.Email
	want := in.desired
	if in.member == nil {
		grant := want
		if in.rehire != nil {
			grant = *in.rehire
		}
		step := Step{Action: ActInvite, Email: email, Role: grant.OrgRole}
		if in.rehire != nil {
			step.regrant = in.rehireAt
		}
		var notes []string
		for _, slug := range sortedKeys(grant.Teams) {
			ti := in.teams(slug)
			switch {
			case !ti.exists:
				notes = append(notes, "team "+slug+" does not exist")
				continue
			case ti.idp:
				notes = append(notes, "team "+slug+" is IdP-provisioned: not changed")
				continue
			}
			step.Teams = append(step.Teams, slug)
			step.teamRoles = append(step.teamRoles, teamRole(slug, grant.Teams[slug]))
		}
		return planResult{Outcome: OutcomeApplied, Steps: []Step{step}, Notes: notes}
	}
	m := in.member
	var res planResult
	if m.OrgRole == "owner" || rank(m.OrgRole) > rank(in.selfRol) {
		// The daemon never changes an owner's role, and Sentry lets it change
		// nothing about a member who outranks the service user.
		res.Notes = append(res.Notes, fmt.Sprintf("member role %s: org role and teams are left as they are", m.OrgRole))
		res.Outcome = OutcomeInSync
		return res
	}
	finalRole := m.OrgRole
	var lower, raise *Step
	switch {
	case want.OrgRole != m.OrgRole && m.RoleRestricted():
		// The identity provider owns this member's org role. Sentry's PUT would
		// accept the change (its lock is disabled), so the daemon holds back.
		res.Outcome = OutcomeNeedsHuman
		res.Reason = fmt.Sprintf("org role %s is managed by the identity provider (idp:role-restricted): policy role %s not applied; change it in the IdP", m.OrgRole, want.OrgRole)
		res.Notes = append(res.Notes, "org role held: idp:role-restricted")
	case want.OrgRole != m.OrgRole && rank(want.OrgRole) > rank(in.selfRol):
		res.Notes = append(res.Notes, "policy role "+want.OrgRole+" outranks the service user: not granted")
	case want.OrgRole != m.OrgRole:
		s := Step{Action: ActSetOrgRole, MemberID: m.ID, Email: email, Role: want.OrgRole, From: m.OrgRole}
		if rank(want.OrgRole) < rank(m.OrgRole) {
			lower = &s
		} else {
			raise = &s
		}
		finalRole = want.OrgRole
	}
	actual := map[string]string{}
	for _, tr := range m.TeamRoles {
		actual[tr.TeamSlug] = deref(tr.Role)
	}
	for _, slug := range m.Teams {
		if _, ok := actual[slug]; !ok {
			actual[slug] = ""
		}
	}
	if m.Pending {
		return planInvite(in, m, actual, finalRole, res)
	}
	var removes, adds, roles []Step
	for _, slug := range sortedKeys(actual) {
		if _, ok := want.Teams[slug]; ok || !in.pol.Managed(slug) {
			continue
		}
		if in.teams(slug).idp {
			res.Notes = append(res.Notes, "team "+slug+" is IdP-provisioned: drift reported, not changed")
			continue
		}
		removes = append(removes, Step{Action: ActRemoveTeam, MemberID: m.ID, Email: email, Team: slug})
	}
	for _, slug := range sortedKeys(want.Teams) {
		ti := in.teams(slug)
		if ti.idp {
			if _, on := actual[slug]; !on {
				res.Notes = append(res.Notes, "team "+slug+" is IdP-provisioned: drift reported, not changed")
			}
			continue
		}
		stored, on := actual[slug]
		if !on {
			if !ti.exists {
				res.Notes = append(res.Notes, "team "+slug+" does not exist")
				continue
			}
			adds = append(adds, Step{Action: ActAddTeam, MemberID: m.ID, Email: email, Team: slug})
			stored = ""
		}
		if finalRole == "billing" {
			continue
		}
		wantRole := want.Teams[slug]
		if policy.EffectiveTeamRole(finalRole, wantRole) != policy.EffectiveTeamRole(finalRole, stored) {
			roles = append(roles, Step{Action: ActSetTeamRole, MemberID: m.ID, Email: email, Team: slug,
				Role: policy.EffectiveTeamRole(finalRole, wantRole), From: policy.EffectiveTeamRole(finalRole, stored)})
		}
	}
	if lower != nil {
		res.Steps = append(res.Steps, *lower)
	}
	res.Steps = append(res.Steps, removes...)
	res.Steps = append(res.Steps, adds...)
	res.Steps = append(res.Steps, roles...)
	res.Steps = append(res.Steps, planRestore(in, finalRole, &res)...)
	if raise != nil {
		res.Steps = append(res.Steps, *raise)
	}
	if res.Outcome != OutcomeNeedsHuman {
		res.Outcome = outcomeOf(res.Steps)
	}
	return res
}

// planInvite keeps a pending invite's role and teams right, and re-sends it when
// it has expired. Invites have no per-team endpoints: one PUT sets both.
func planInvite(in planInput, m *sentry.Member, actual map[string]string, finalRole string, res planResult) planResult {
	want := in.desired
	teams := map[string]string{}
	for slug, role := range actual {
		if _, ok := want.Teams[slug]; ok || !in.pol.Managed(slug) || in.teams(slug).idp {
			teams[slug] = role
		}
	}
	for slug, role := range want.Teams {
		if ti := in.teams(slug); ti.exists && !ti.idp {
			teams[slug] = role
		}
	}
	// Only the team set counts: Sentry stores an invite's team roles as null
	// ("Do not set team-roles when inviting"), so the roles are set once the
	// invite is accepted, by the member plan (set_team_role).
	same := len(teams) == len(actual) && finalRole == m.OrgRole
	for slug := range teams {
		if _, ok := actual[slug]; !ok {
			same = false
		}
	}
	if !same {
		// teamRoles non-nil: this PUT sets the invite's whole team set.
		s := Step{Action: ActSetOrgRole, MemberID: m.ID, Email: in.person.Email, Role: finalRole, From: m.OrgRole, teamRoles: []sentry.TeamRole{},
			Invite: true, FromTeams: sortedKeys(actual)}
		for _, slug := range sortedKeys(teams) {
			s.Teams = append(s.Teams, slug)
			s.teamRoles = append(s.teamRoles, teamRole(slug, teams[slug]))
		}
		res.Steps = append(res.Steps, s)
	}
	if m.Expired {
		s := Step{Action: ActReinvite, MemberID: m.ID, Email: in.person.Email, teamRoles: []sentry.TeamRole{}, Invite: true}
		for _, slug := range sortedKeys(teams) {
			s.teamRoles = append(s.teamRoles, teamRole(slug, teams[slug]))
		}
		res.Steps = append(res.Steps, s)
	}
	if res.Outcome != OutcomeNeedsHuman {
		res.Outcome = outcomeOf(res.Steps)
	}
	return res
}

// planRemoval removes a terminated (or suspended, with suspend: remove) person's
// membership or invite.
func planRemoval(in planInput) planResult {
	m := in.member
	if m == nil {
		return planResult{Outcome: OutcomeInSync, Reason: "no member or invite with this email"}
	}
	if rank(m.OrgRole) > rank(in.selfRol) {
		return planResult{Outcome: OutcomeNeedsHuman, Reason: fmt.Sprintf("member role %s outranks the service user's role %s", m.OrgRole, in.selfRol)}
	}
	s := Step{Action: ActRemoveMember, MemberID: m.ID, Email: in.person.Email, Via: "rest", Role: m.OrgRole}
	if m.Pending {
		s.Action = ActDeleteInvite
	}
	if m.IdPProvisioned() {
		s.Via = "scim"
	}
	return planResult{Outcome: OutcomeApplied, Steps: []Step{s}}
}

// planStrip (suspend: strip) keeps the membership but drops managed teams and
// lowers the org role to member.
func planStrip(in planInput) planResult {
	in.desired = policy.Desired{OrgRole: "member", Teams: map[string]string{}}
	if in.member != nil && rank(in.member.OrgRole) < rank("member") {
		in.desired.OrgRole = in.member.OrgRole
	}
	if in.member == nil {
		return planResult{Outcome: OutcomeInSync, Reason: "no member or invite with this email"}
	}
	return planActive(in)
}

func outcomeOf(steps []Step) Outcome {
	if len(steps) == 0 {
		return OutcomeInSync
	}
	return OutcomeApplied
}

func teamRole(slug, role string) sentry.TeamRole {
	tr := sentry.TeamRole{TeamSlug: slug}
	if role != "" {
		r := role
		tr.Role = &r
	}
	return tr
}

func rank(role string) int { return policy.OrgRoleRank(role) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// emailMatches reports whether m's invite email or user email equals email
// (exact, case-insensitive).
func emailMatches(m *sentry.Member, email string) bool {
	if strings.EqualFold(m.Email, email) {
		return true
	}
	return m.User != nil && strings.EqualFold(m.User.Email, email)
}
