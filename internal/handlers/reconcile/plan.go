package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Classes of people and members.
const (
	ClassLinked     = "linked"     // one member matches the person
	ClassMissing    = "missing"    // an active person without a member or invite
	ClassAbsent     = "absent"     // a leaver without a member: nothing to do
	ClassOrphan     = "orphan"     // a member nobody in the directory matches
	ClassDisputed   = "disputed"   // several members match one person (or one member several people)
	ClassUnresolved = "unresolved" // a person without an email
	ClassProtected  = "protected"  // protected accounts and the daemon's own member
)

// Organization-level actions (besides convergence's per-person actions).
const (
	ActCreateTeam        = "create_team"
	ActAddProjectTeam    = "add_project_team"
	ActRemoveProjectTeam = "remove_project_team"
)

// PlannedStep is one step of a stored plan: a convergence step plus what JSON
// would otherwise lose (the team set it sends) and the organization-level
// fields.
type PlannedStep struct {
	converge.Step
	TeamRoleSet []sentry.TeamRole `json:"team_roles,omitempty"`
	HasTeamSet  bool              `json:"has_team_set,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Project     string            `json:"project,omitempty"`
	Name        string            `json:"name,omitempty"`
}

func planned(s converge.Step) PlannedStep {
	ps := PlannedStep{Step: s}
	if trs := s.TeamRoles(); trs != nil {
		ps.TeamRoleSet, ps.HasTeamSet = trs, true
	}
	return ps
}

// step restores the convergence step.
func (ps PlannedStep) step() converge.Step {
	if ps.HasTeamSet {
		trs := ps.TeamRoleSet
		if trs == nil {
			trs = []sentry.TeamRole{}
		}
		return ps.Step.WithTeamRoles(trs)
	}
	return ps.Step
}

// Item is one person's (or orphan member's) part of a plan.
type Item struct {
	PersonKey string `json:"person_key"`
	Email     string `json:"email"`
	Class     string `json:"class"`
	MemberID  string `json:"member_id,omitempty"`
	// Member is the member as read when planning (for the access snapshot and
	// the leaver's tokens; an approval re-reads it).
	Member *sentry.Member `json:"member,omitempty"`
	Steps  []PlannedStep  `json:"steps"`
	Notes  []string       `json:"notes,omitempty"`
}

// Report is a finding reported without a change.
type Report struct {
	Kind      string `json:"kind"` // orphan, disputed, needs_human, unresolved, sso_unlinked, token, note
	Email     string `json:"email,omitempty"`
	MemberID  string `json:"member_id,omitempty"`
	PersonKey string `json:"person_key,omitempty"`
	TokenID   string `json:"token_id,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// Plan is a run's plan, as stored with a halted run.
type Plan struct {
	Items   []Item         `json:"items"`
	Org     []PlannedStep  `json:"org_steps"`
	Reports []Report       `json:"reports"`
	Counts  Counts         `json:"counts"`
	Classes map[string]int `json:"classes"`
	Members int            `json:"members"`
	People  int            `json:"people"`
	Owner   string         `json:"owner,omitempty"`   // the replica that planned it
	Trigger string         `json:"trigger,omitempty"` // schedule, operator, bench
	// Trace is the W3C trace context of the run that planned it: applying
	// an approved plan later links to it.
	Trace map[string]string `json:"trace,omitempty"`
}

func encodePlan(p *Plan) (json.RawMessage, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return b, nil
}

func encodeJSON(v any) (json.RawMessage, error) { return json.Marshal(v) }

// DecodePlan reads a stored plan.
func DecodePlan(b []byte) (*Plan, error) {
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	return &p, nil
}

const multiple = int32(-1)

func (r *Reconciler) plan(ctx context.Context, org *orgState, pol policy.Policy, prog *progress) (*Plan, error) {
	pl := &Plan{Classes: map[string]int{}, Members: len(org.members), Items: []Item{}, Org: []PlannedStep{}, Reports: []Report{}}
	byEmail := make(map[string]int32, len(org.members)+len(org.members)/4)
	add := func(email string, i int32) {
		if email == "" {
			return
		}
		e := lowerEmail(email)
		if prev, ok := byEmail[e]; ok && prev != i {
			byEmail[e] = multiple
			return
		}
		byEmail[e] = i
	}
	for i := range org.members {
		add(org.members[i].Email, int32(i))
		add(org.members[i].UserEmail, int32(i))
	}
	teams := func(slug string) converge.TeamInfo {
		if ti, ok := org.teamIdx[slug]; ok {
			return converge.TeamInfo{Exists: true, IdP: org.teams[ti].IdP}
		}
		return converge.TeamInfo{}
	}
	claimed := make([]bool, len(org.members))
	conv := r.o.Converger
	for rec, err := range r.o.Directory.List(ctx) {
		if err != nil {
			return nil, fmt.Errorf("list directory: %w", err)
		}
		pl.People++
		prog.add(phaseDirectory, 1)
		email := lowerEmail(rec.Person.Email)
		if email == "" {
			pl.Classes[ClassUnresolved]++
			pl.Reports = append(pl.Reports, Report{Kind: ClassUnresolved, PersonKey: rec.Key, Detail: "no email: cannot be matched in Sentry"})
			continue
		}
		idx, found := byEmail[email]
		switch {
		case found && idx == multiple:
			pl.Classes[ClassDisputed]++
			ids := org.matching(email)
			for _, i := range ids {
				claimed[i] = true
			}
			pl.Reports = append(pl.Reports, Report{Kind: ClassDisputed, PersonKey: rec.Key, Email: email,
				Detail: "several members match: " + strings.Join(org.ids(ids), ", ")})
			continue
		case found && claimed[idx]:
			pl.Classes[ClassDisputed]++
			pl.Reports = append(pl.Reports, Report{Kind: ClassDisputed, PersonKey: rec.Key, Email: email, MemberID: org.members[idx].ID,
				Detail: "another directory person already matches this member"})
			continue
		}
		var member *sentry.Member
		class := ClassLinked
		if found {
			claimed[idx] = true
			member = org.member(idx)
		} else if rec.Person.Status == events.Active {
			class = ClassMissing
		} else {
			class = ClassAbsent
		}
		// A rehire's accepted invite may still owe its snapshot's team roles
		// (Sentry stores an invite's as null): the same restoration as Converge.
		restore, err := conv.RehireRestore(ctx, rec, member)
		if err != nil {
			pl.Reports = append(pl.Reports, Report{Kind: "note", PersonKey: rec.Key, Email: email,
				Detail: "rehire team roles not planned this run: " + err.Error()})
			restore = nil
		}
		res := conv.PlanMemberWith(rec, member, teams, restore)
		switch res.Outcome {
		case converge.OutcomeProtected:
			class = ClassProtected
		case converge.OutcomeNeedsHuman:
			pl.Reports = append(pl.Reports, Report{Kind: "needs_human", PersonKey: rec.Key, Email: email, Detail: res.Reason})
		}
		pl.Classes[class]++
		it := Item{PersonKey: rec.Key, Email: rec.Person.Email, Class: class, Notes: res.Notes}
		if member != nil {
			it.MemberID = member.ID
		}
		for _, s := range res.Steps {
			if s.Action == converge.ActReinvite {
				continue // expired invites are the pending-invites job's
			}
			it.Steps = append(it.Steps, planned(s))
		}
		if len(it.Steps) > 0 {
			it.Member = member
			pl.Items = append(pl.Items, it)
		}
	}
	// Orphans: members nobody in the directory matches.
	for i := range org.members {
		if claimed[i] {
			continue
		}
		mr := &org.members[i]
		email := mr.Email
		if mr.UserEmail != "" {
			email = mr.UserEmail
		}
		if mr.ID == r.o.SelfMemberID || strings.EqualFold(email, r.o.SelfEmail) || strings.EqualFold(mr.Email, r.o.SelfEmail) ||
			pol.IsProtected(email) || pol.IsProtected(mr.Email) {
			pl.Classes[ClassProtected]++
			continue
		}
		// A person written while the directory was being listed is not in
		// the listing (the scan ends at the stream's last sequence as of its
		// start). The email link says whether the member is really nobody's.
		if key := r.linkedPerson(ctx, email, mr.Email); key != "" {
			pl.Reports = append(pl.Reports, Report{Kind: "note", PersonKey: key, Email: email, MemberID: mr.ID,
				Detail: "in the directory but changed while this run listed it: planned by the next run"})
			continue
		}
		pl.Classes[ClassOrphan]++
		rep := Report{Kind: ClassOrphan, Email: email, MemberID: mr.ID, Detail: "member " + mr.Role + " not in the directory"}
		if pol.Reconcile.Orphans != "remove" {
			rep.Detail += " (reconcile.orphans: report)"
			pl.Reports = append(pl.Reports, rep)
			continue
		}
		rec := orphanRecord(email)
		res := conv.PlanMember(rec, org.member(int32(i)), teams)
		if res.Outcome == converge.OutcomeNeedsHuman || len(res.Steps) == 0 {
			rep.Detail += ": " + res.Reason
			pl.Reports = append(pl.Reports, rep)
			continue
		}
		it := Item{PersonKey: rec.Key, Email: email, Class: ClassOrphan, MemberID: mr.ID, Member: org.member(int32(i))}
		for _, s := range res.Steps {
			it.Steps = append(it.Steps, planned(s))
		}
		pl.Items = append(pl.Items, it)
	}
	// SSO.
	if pol.SSO.Required {
		for i := range org.members {
			mr := &org.members[i]
			if mr.Pending || mr.SSO || mr.ID == r.o.SelfMemberID {
				continue
			}
			pl.Reports = append(pl.Reports, Report{Kind: "sso_unlinked", Email: firstNonEmpty(mr.UserEmail, mr.Email), MemberID: mr.ID,
				Detail: "sso.required: the member has not linked SSO"})
		}
	}
	// Token hygiene.
	steps, reports := tokenFindings(org, pol, r.o.Now())
	pl.Org = append(pl.Org, steps...)
	pl.Reports = append(pl.Reports, reports...)
	// Team structure as code.
	tsteps, treports, err := r.teamStructure(ctx, org, pol)
	if err != nil {
		return nil, err
	}
	pl.Org = append(pl.Org, tsteps...)
	pl.Reports = append(pl.Reports, treports...)
	if r.o.Tokens != nil {
		if err := r.o.Tokens.Build(ctx, entries(org.created), org.tokens); err != nil {
			return nil, fmt.Errorf("token index: %w", err)
		}
	}
	pl.count()
	return pl, nil
}

func (pl *Plan) count() {
	var c Counts
	for _, it := range pl.Items {
		for _, s := range it.Steps {
			switch {
			case s.Removal():
				c.Remove++
			case s.Action == converge.ActInvite:
				c.Invite++
			case s.Action == converge.ActReportToken:
				c.Report++
			default:
				c.Update++
			}
		}
	}
	for _, s := range pl.Org {
		if s.Action == converge.ActReportToken {
			continue // counted with its report
		}
		c.Update++
	}
	c.Report += len(pl.Reports)
	pl.Counts = c
}

// orphanRecord is the synthetic desired state of a member nobody claims: gone.
func orphanRecord(email string) state.PersonRecord {
	return state.PersonRecord{Key: "email:" + lowerEmail(email), Person: events.Person{Email: email, Status: events.Terminated}}
}

func (o *orgState) matching(email string) []int32 {
	var out []int32
	for i := range o.members {
		if lowerEmail(o.members[i].Email) == email || lowerEmail(o.members[i].UserEmail) == email {
			out = append(out, int32(i))
		}
	}
	return out
}

func (o *orgState) ids(is []int32) []string {
	out := make([]string, len(is))
	for k, i := range is {
		out[k] = o.members[i].ID
	}
	return out
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func isNotFound(err error) bool { return errors.Is(err, sentry.ErrNotFound) }

// linkedPerson returns the directory person one of the emails is linked to,
// or "" when none is (or the directory cannot say: the member stays an
// orphan, and the removal is re-checked before it is applied).
func (r *Reconciler) linkedPerson(ctx context.Context, emails ...string) string {
	seen := ""
	for _, e := range emails {
		e = lowerEmail(e)
		if e == "" || e == seen {
			continue
		}
		seen = e
		if key, err := r.o.Directory.Resolve(ctx, "email", e); err == nil && key != "" {
			return key
		}
	}
	return ""
}
