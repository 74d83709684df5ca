package reconcile

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// TeamAccess is one team of a member in the access review.
type TeamAccess struct {
	Slug string `json:"slug"`
	Role string `json:"role"` // effective team role
	IdP  bool   `json:"idp_provisioned,omitempty"`
}

// ProjectAccess is a project a member reaches, and through which teams.
type ProjectAccess struct {
	Slug string   `json:"slug"`
	Via  []string `json:"via"`
}

// ReviewRow is one member in the access review: the effective-permission
// picture auditors ask for.
type ReviewRow struct {
	MemberID     string          `json:"member_id"`
	Email        string          `json:"email"`
	OrgRole      string          `json:"org_role"`
	Pending      bool            `json:"pending"`
	SSOLinked    bool            `json:"sso_linked"`
	IdP          bool            `json:"idp_provisioned"`
	Teams        []TeamAccess    `json:"teams"`
	Projects     []ProjectAccess `json:"projects"`
	PersonKey    string          `json:"person,omitempty"`
	Status       string          `json:"status,omitempty"` // desired status in the directory
	Class        string          `json:"class"`            // linked, orphan, disputed, protected
	PolicyAgrees bool            `json:"policy_agrees"`
	Differences  []string        `json:"differences,omitempty"` // what convergence would change
	// LastLogin is Sentry's user.lastLogin (nil: never logged in, or an invite).
	LastLogin *time.Time `json:"last_login"`
	// Grants name, for a linked person, the policy rule and the HR
	// attributes behind the org role and each team the policy grants
	// (policy.Policy.Explain).
	Grants []Grant `json:"grants,omitempty"`
}

// Grant is one access the policy grants and why.
type Grant struct {
	Access  string            `json:"access"` // "org_role member", "team payments admin"
	Rule    string            `json:"rule"`
	Matched map[string]string `json:"matched,omitempty"` // the HR attributes the rule matched
}

// ClassNoAccess is a directory person with no Sentry member or invite: the
// rows that make the review complete (everyone in HR appears).
const ClassNoAccess = "no_access"

// grants explains the policy's desired access for an active person.
func grants(pol policy.Policy, p events.Person) []Grant {
	if p.Status == events.Terminated || p.Status == events.Suspended {
		return nil
	}
	ex := pol.Explain(p)
	out := []Grant{{Access: "org_role " + ex.OrgRole, Rule: ex.OrgRoleFrom.Rule, Matched: ex.OrgRoleFrom.Matched}}
	for _, slug := range sortedKeys(ex.Teams) {
		src := ex.TeamsFrom[slug]
		role := ex.Teams[slug]
		if role == "" {
			role = "member"
		}
		out = append(out, Grant{Access: "team " + slug + " " + role, Rule: src.Rule, Matched: src.Matched})
	}
	return out
}

// Review reads the organization (members, teams, team members, team
// projects) and the directory and returns one row per member.
func (r *Reconciler) Review(ctx context.Context) ([]ReviewRow, error) {
	ctx = sentry.WithPriority(ctx, sentry.PriorityReconcile)
	org, err := r.read(ctx, nil)
	if err != nil {
		return nil, err
	}
	pol := r.o.Policy()
	teamProjects := make([][]string, len(org.teams))
	if err := parallel(ctx, r.o.Concurrency, len(org.teams), func(ctx context.Context, i int) error {
		for p, err := range r.o.Sentry.TeamProjects(ctx, org.teams[i].Slug) {
			if err != nil {
				return fmt.Errorf("team %s projects: %w", org.teams[i].Slug, err)
			}
			teamProjects[i] = append(teamProjects[i], p.Slug)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	rows := make([]ReviewRow, len(org.members))
	byEmail := map[string]int32{}
	for i := range org.members {
		mr := &org.members[i]
		row := ReviewRow{MemberID: mr.ID, Email: firstNonEmpty(mr.UserEmail, mr.Email), OrgRole: mr.Role, Pending: mr.Pending,
			SSOLinked: mr.SSO, IdP: mr.IdP, Teams: []TeamAccess{}, Projects: []ProjectAccess{}, Class: ClassOrphan}
		if mr.LastLogin != 0 {
			t := time.Unix(mr.LastLogin, 0).UTC()
			row.LastLogin = &t
		}
		via := map[string][]string{}
		for _, ms := range mr.Teams {
			t := org.teams[ms.team]
			row.Teams = append(row.Teams, TeamAccess{Slug: t.Slug, Role: policy.EffectiveTeamRole(mr.Role, roleNames[ms.role]), IdP: t.IdP})
			for _, p := range teamProjects[ms.team] {
				via[p] = append(via[p], t.Slug)
			}
		}
		slices.SortFunc(row.Teams, func(a, b TeamAccess) int { return strings.Compare(a.Slug, b.Slug) })
		for _, p := range sortedKeys(via) {
			vs := via[p]
			slices.Sort(vs)
			row.Projects = append(row.Projects, ProjectAccess{Slug: p, Via: vs})
		}
		rows[i] = row
		for _, e := range []string{mr.Email, mr.UserEmail} {
			if e == "" {
				continue
			}
			e = lowerEmail(e)
			if prev, ok := byEmail[e]; ok && prev != int32(i) {
				byEmail[e] = multiple
			} else {
				byEmail[e] = int32(i)
			}
		}
	}
	teams := func(slug string) converge.TeamInfo {
		if ti, ok := org.teamIdx[slug]; ok {
			return converge.TeamInfo{Exists: true, IdP: org.teams[ti].IdP}
		}
		return converge.TeamInfo{}
	}
	// claimed marks the rows a directory person already matched, as plan does:
	// the row's class cannot tell, since a third claimant of a disputed row (or
	// a claimant of a row disputed through its other email) found it not
	// "linked" and re-linked it with its own verdict.
	claimed := make([]bool, len(rows))
	var noAccess []ReviewRow
	dispute := func(row *ReviewRow, why string) {
		// Reconcile changes nothing for a disputed member: no claimant's plan
		// applies, so none of their differences stand.
		row.Class, row.PolicyAgrees, row.Differences = ClassDisputed, false, []string{"disputed: " + why}
	}
	for rec, err := range r.o.Directory.List(ctx) {
		if err != nil {
			return nil, fmt.Errorf("list directory: %w", err)
		}
		e := lowerEmail(rec.Person.Email)
		idx, ok := byEmail[e]
		if e == "" || !ok {
			noAccess = append(noAccess, noAccessRow(pol, rec))
			continue
		}
		if idx == multiple {
			ids := org.matching(e)
			for _, i := range ids {
				claimed[i] = true
				rows[i].PersonKey, rows[i].Status = rec.Key, string(rec.Person.Status)
				dispute(&rows[i], "several members match "+e+": "+strings.Join(org.ids(ids), ", "))
			}
			continue
		}
		row := &rows[idx]
		if claimed[idx] {
			dispute(row, "another directory person already matches this member ("+rec.Key+")")
			continue
		}
		claimed[idx] = true
		row.Class, row.PersonKey, row.Status = ClassLinked, rec.Key, string(rec.Person.Status)
		row.Grants = grants(pol, rec.Person)
		res := r.o.Converger.PlanMember(rec, org.member(idx), teams)
		if res.Outcome == converge.OutcomeProtected {
			row.Class = ClassProtected
		}
		row.PolicyAgrees = res.Outcome != converge.OutcomeNeedsHuman
		if !row.PolicyAgrees {
			// e.g. an owner leaver the daemon may not remove: say why the
			// policy disagrees, or the row disagrees without a difference.
			row.Differences = append(row.Differences, "needs a human: "+res.Reason)
		}
		for _, s := range res.Steps {
			if s.Action == converge.ActReinvite {
				continue
			}
			row.PolicyAgrees = false
			row.Differences = append(row.Differences, describe(s))
		}
	}
	for i := range rows {
		mr := &org.members[i]
		if rows[i].Class == ClassOrphan && (mr.ID == r.o.SelfMemberID || strings.EqualFold(rows[i].Email, r.o.SelfEmail) ||
			pol.IsProtected(rows[i].Email) || pol.IsProtected(mr.Email)) {
			rows[i].Class, rows[i].PolicyAgrees = ClassProtected, true
		}
		if rows[i].Class == ClassOrphan {
			rows[i].Differences = []string{"not in the directory (orphan)"}
		}
		if pol.SSO.Required && !rows[i].SSOLinked && !rows[i].Pending && rows[i].Class != ClassProtected {
			rows[i].PolicyAgrees = false
			rows[i].Differences = append(rows[i].Differences, "sso.required: SSO not linked")
		}
	}
	slices.SortFunc(noAccess, func(a, b ReviewRow) int { return strings.Compare(a.PersonKey, b.PersonKey) })
	return append(rows, noAccess...), nil
}

// noAccessRow is a directory person no member or invite matches: a leaver
// (correct: no access) or someone the policy would invite.
func noAccessRow(pol policy.Policy, rec state.PersonRecord) ReviewRow {
	row := ReviewRow{Email: rec.Person.Email, PersonKey: rec.Key, Status: string(rec.Person.Status), Class: ClassNoAccess,
		Teams: []TeamAccess{}, Projects: []ProjectAccess{}, PolicyAgrees: true, Grants: grants(pol, rec.Person)}
	switch {
	case rec.Person.Status == events.Terminated || rec.Person.Status == events.Suspended:
	case rec.Person.Email == "":
		row.PolicyAgrees, row.Differences = false, []string{"no email known: cannot be matched to a Sentry member"}
	case rec.Person.Status != "":
		row.PolicyAgrees, row.Differences = false, []string{"no Sentry member: convergence would invite as " + pol.Evaluate(rec.Person).OrgRole}
	}
	return row
}

func describe(s converge.Step) string {
	out := s.Action
	if s.Team != "" {
		out += " " + s.Team
	}
	if s.Role != "" {
		out += " role=" + s.Role
	}
	if s.From != "" {
		out += " from=" + s.From
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ReviewCSVHeader is the access review's CSV header.
var ReviewCSVHeader = []string{"member_id", "email", "org_role", "pending", "sso_linked", "idp_provisioned", "teams", "projects",
	"person", "status", "class", "policy_agrees", "differences", "last_login", "grants"}

// WriteReviewCSV writes rows as CSV: teams as slug:role and projects as
// slug<team+team, each list separated by ';'.
func WriteReviewCSV(w io.Writer, rows []ReviewRow) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ReviewCSVHeader); err != nil {
		return err
	}
	for _, r := range rows {
		var ts, ps []string
		for _, t := range r.Teams {
			ts = append(ts, t.Slug+":"+t.Role)
		}
		for _, p := range r.Projects {
			ps = append(ps, p.Slug+"<"+strings.Join(p.Via, "+"))
		}
		if err := cw.Write([]string{r.MemberID, r.Email, r.OrgRole, strconv.FormatBool(r.Pending), strconv.FormatBool(r.SSOLinked),
			strconv.FormatBool(r.IdP), strings.Join(ts, ";"), strings.Join(ps, ";"), r.PersonKey, r.Status, r.Class,
			strconv.FormatBool(r.PolicyAgrees), strings.Join(r.Differences, "; "), lastLogin(r.LastLogin), grantList(r.Grants)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func lastLogin(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// grantList is "access < rule (k=v, …)" per grant, separated by ';'.
func grantList(gs []Grant) string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.Access+" < "+policy.Source{Rule: g.Rule, Matched: g.Matched}.String())
	}
	return strings.Join(out, "; ")
}
