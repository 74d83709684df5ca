package reconcile

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// memberRec is a member as the reconciler keeps it: compact, so 100,000 of
// them fit comfortably in memory.
type memberRec struct {
	ID, Email, UserEmail, UserID, Role string
	Pending, Expired, IdP, SSO         bool
	RoleRestricted                     bool // idp:role-restricted
	// LastLogin is the user's last login, Unix seconds (0: never or unknown).
	LastLogin int64
	Teams     []membership
}

// membership is one team membership: the team's index and the stored role.
type membership struct {
	team int32
	role uint8 // roleNone, roleContributor, roleAdmin
}

const (
	roleNone uint8 = iota
	roleContributor
	roleAdmin
)

func packRole(r *string) uint8 {
	switch {
	case r == nil:
		return roleNone
	case *r == "admin":
		return roleAdmin
	case *r == "contributor":
		return roleContributor
	}
	return roleNone
}

var roleNames = [...]string{"", "contributor", "admin"}

type teamRec struct {
	Slug, Name string
	IdP        bool
}

// orgState is everything one run read from Sentry.
type orgState struct {
	members []memberRec
	byID    map[string]int32
	teams   []teamRec
	teamIdx map[string]int32
	tokens  []sentry.OrgAuthToken
	creator map[string]string // token id → creator user id (audit log)
	created []sentry.AuditLogEntry
}

// member rebuilds the detail shape planning expects.
func (o *orgState) member(i int32) *sentry.Member {
	mr := &o.members[i]
	m := &sentry.Member{ID: mr.ID, Email: mr.Email, OrgRole: mr.Role, Pending: mr.Pending, Expired: mr.Expired,
		Flags: map[string]bool{"idp:provisioned": mr.IdP, "sso:linked": mr.SSO, "idp:role-restricted": mr.RoleRestricted},
		Teams: []string{}, TeamRoles: []sentry.TeamRole{}}
	if mr.UserID != "" {
		m.User = &sentry.User{ID: mr.UserID, Email: mr.UserEmail}
	}
	for _, ms := range mr.Teams {
		slug := o.teams[ms.team].Slug
		m.Teams = append(m.Teams, slug)
		tr := sentry.TeamRole{TeamSlug: slug}
		if ms.role != roleNone {
			r := roleNames[ms.role]
			tr.Role = &r
		}
		m.TeamRoles = append(m.TeamRoles, tr)
	}
	return m
}

func compact(m sentry.Member) memberRec {
	mr := memberRec{ID: m.ID, Email: m.Email, Role: m.OrgRole, Pending: m.Pending, Expired: m.Expired,
		IdP: m.IdPProvisioned(), SSO: m.SSOLinked(), RoleRestricted: m.RoleRestricted()}
	if m.User != nil {
		mr.UserID, mr.UserEmail = m.User.ID, m.User.Email
		if m.User.LastLogin != nil {
			mr.LastLogin = m.User.LastLogin.Unix()
		}
	}
	return mr
}

// read streams the organization: members, teams and their members, pending
// invites' teams, org auth tokens and their creators. Team-member pages are
// read concurrently with the member list.
func (r *Reconciler) read(ctx context.Context, prog *progress) (*orgState, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	api := r.o.Sentry
	org := &orgState{teamIdx: map[string]int32{}, creator: map[string]string{}}
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		errMu.Unlock()
	}
	// Members.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m, err := range api.ListMembers(ctx, "") {
			if err != nil {
				fail(fmt.Errorf("list members: %w", err))
				return
			}
			org.members = append(org.members, compact(m))
			prog.add(phaseMembers, 1)
		}
	}()
	// Teams, then each team's members.
	type teamMember struct {
		memberID string
		role     uint8
	}
	var perTeam [][]teamMember
	wg.Add(1)
	go func() {
		defer wg.Done()
		for t, err := range api.ListTeams(ctx, "") {
			if err != nil {
				fail(fmt.Errorf("list teams: %w", err))
				return
			}
			org.teamIdx[t.Slug] = int32(len(org.teams))
			org.teams = append(org.teams, teamRec{Slug: t.Slug, Name: t.Name, IdP: t.IdPProvisioned()})
		}
		prog.total(phaseTeams, len(org.teams))
		perTeam = make([][]teamMember, len(org.teams))
		jobs := make(chan int)
		var tw sync.WaitGroup
		for range r.o.Concurrency {
			tw.Add(1)
			go func() {
				defer tw.Done()
				for i := range jobs {
					var list []teamMember
					for m, err := range api.TeamMembers(ctx, org.teams[i].Slug) {
						if err != nil {
							fail(fmt.Errorf("team %s members: %w", org.teams[i].Slug, err))
							break
						}
						list = append(list, teamMember{memberID: m.ID, role: packRole(m.TeamRole)})
					}
					perTeam[i] = list
					prog.add(phaseTeams, 1)
				}
			}()
		}
		for i := range org.teams {
			select {
			case jobs <- i:
			case <-ctx.Done():
			}
		}
		close(jobs)
		tw.Wait()
	}()
	// Org auth tokens and who created them.
	wg.Add(1)
	go func() {
		defer wg.Done()
		ts, err := api.ListOrgAuthTokens(ctx)
		if err != nil {
			fail(fmt.Errorf("list org auth tokens: %w", err))
			return
		}
		org.tokens = ts
		if len(ts) == 0 {
			return
		}
		for e, err := range api.AuditLogs(ctx, sentry.AuditLogQuery{Event: "org-auth-token.create"}) {
			if err != nil {
				fail(fmt.Errorf("audit log: %w", err))
				return
			}
			org.created = append(org.created, e)
			if id := e.TargetObjectID(); id != "" && e.ActorUserID() != "" {
				if _, seen := org.creator[id]; !seen { // newest first: keep the latest
					org.creator[id] = e.ActorUserID()
				}
			}
		}
	}()
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	org.byID = make(map[string]int32, len(org.members))
	for i := range org.members {
		org.byID[org.members[i].ID] = int32(i)
	}
	for ti, list := range perTeam {
		for _, tm := range list {
			if i, ok := org.byID[tm.memberID]; ok {
				org.members[i].Teams = append(org.members[i].Teams, membership{team: int32(ti), role: tm.role})
			}
		}
		perTeam[ti] = nil
	}
	// Pending invites are not listed by the team-members endpoint: their teams
	// come from their detail, one call each.
	var pending []int32
	for i := range org.members {
		if org.members[i].Pending {
			pending = append(pending, int32(i))
		}
	}
	prog.total(phaseInvites, len(pending))
	if err := parallel(ctx, r.o.Concurrency, len(pending), func(ctx context.Context, k int) error {
		i := pending[k]
		m, err := api.GetMember(ctx, org.members[i].ID)
		if err != nil {
			if isNotFound(err) { // accepted or deleted meanwhile; the next run sees it
				return nil
			}
			return fmt.Errorf("read invite %s: %w", org.members[i].ID, err)
		}
		var ms []membership
		roles := map[string]*string{}
		for _, tr := range m.TeamRoles {
			roles[tr.TeamSlug] = tr.Role
		}
		for _, slug := range m.Teams {
			if _, ok := roles[slug]; !ok {
				roles[slug] = nil
			}
		}
		for slug, role := range roles {
			if ti, ok := org.teamIdx[slug]; ok {
				ms = append(ms, membership{team: ti, role: packRole(role)})
			}
		}
		org.members[i].Teams = ms // distinct index per goroutine
		prog.add(phaseInvites, 1)
		return nil
	}); err != nil {
		return nil, err
	}
	return org, nil
}

// parallel runs fn(0..n-1) on up to workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	var (
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { ferr = err; cancel() })
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case jobs <- i:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(jobs)
	wg.Wait()
	if ferr != nil {
		return ferr
	}
	return ctx.Err()
}

func lowerEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
