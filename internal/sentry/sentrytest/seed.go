package sentrytest

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Seed is the initial content of the sandbox organization. Its JSON form is
// the seed file format documented in doc.go.
type Seed struct {
	Org           SeedOrg            `json:"organization"`
	Members       []SeedMember       `json:"members"`
	Teams         []SeedTeam         `json:"teams"`
	Projects      []SeedProject      `json:"projects,omitempty"`
	OrgAuthTokens []SeedOrgAuthToken `json:"orgAuthTokens,omitempty"`
	Generate      *SeedGenerate      `json:"generate,omitempty"`
}

// SeedOrg describes the organization itself.
type SeedOrg struct {
	ID           string `json:"id,omitempty"`   // numeric, default "4505281256090624"
	Slug         string `json:"slug,omitempty"` // overridden by Options.Org when that is set
	Name         string `json:"name,omitempty"`
	SAML         bool   `json:"saml"`
	SCIM         bool   `json:"scim"`                   // SCIM enabled (requires SAML)
	SCIMProvider string `json:"scimProvider,omitempty"` // "okta" (default) or "azure" (omits "active")
	// OpenMembership is Sentry's "Open Membership" (allow_joinleave): any
	// member may add members to any team. Off: members get 202 access requests.
	OpenMembership bool `json:"openMembership,omitempty"`
}

// SeedMember is one organization member or pending invite.
type SeedMember struct {
	ID              string            `json:"id,omitempty"` // numeric; default allocated
	UserID          string            `json:"userId,omitempty"`
	Email           string            `json:"email"`
	Name            string            `json:"name,omitempty"`
	OrgRole         string            `json:"orgRole,omitempty"` // default "member"
	Pending         bool              `json:"pending,omitempty"` // invite not yet accepted: no user
	Flags           []string          `json:"flags,omitempty"`   // e.g. "idp:provisioned", "sso:linked"
	Teams           map[string]string `json:"teams,omitempty"`   // team slug → team role ("" or null = none/minimum)
	SecondaryEmails []SeedEmail       `json:"secondaryEmails,omitempty"`
	Has2FA          bool              `json:"has2fa,omitempty"`
	// LastLogin is the user's last login (user.lastLogin in the member
	// serializer, from src/sentry/api/serializers/models/user.py); nil: never.
	LastLogin   *time.Time `json:"lastLogin,omitempty"`
	InvitedBy   string     `json:"invitedBy,omitempty"` // email of the inviter
	DateCreated time.Time  `json:"dateCreated,omitzero"`
}

// SeedEmail is a secondary email address of a user.
type SeedEmail struct {
	Email    string `json:"email"`
	Verified bool   `json:"verified"`
}

// SeedTeam is one team.
type SeedTeam struct {
	ID             string `json:"id,omitempty"`
	Slug           string `json:"slug"`
	Name           string `json:"name,omitempty"`
	IdPProvisioned bool   `json:"idpProvisioned,omitempty"`
}

// SeedProject is one project and the teams it belongs to.
type SeedProject struct {
	ID       string   `json:"id,omitempty"`
	Slug     string   `json:"slug"`
	Name     string   `json:"name,omitempty"`
	Platform string   `json:"platform,omitempty"`
	Teams    []string `json:"teams,omitempty"`
}

// SeedOrgAuthToken is an org auth token created by CreatedBy (an email); an
// audit entry org-auth-token.create naming that user is written for it.
type SeedOrgAuthToken struct {
	ID        string    `json:"id,omitempty"`
	Name      string    `json:"name"`
	Token     string    `json:"token,omitempty"` // default sntrys_<generated>
	CreatedBy string    `json:"createdBy,omitempty"`
	Created   time.Time `json:"dateCreated,omitzero"`
	LastUsed  time.Time `json:"dateLastUsed,omitzero"`
}

// SeedGenerate adds synthetic members and teams after the explicit ones,
// deterministically, for load tests (e.g. 100,000 members and 2,000 teams).
type SeedGenerate struct {
	Members         int `json:"members"`                   // regular members user<N>@<org>.test
	Teams           int `json:"teams"`                     // teams team-<N>
	TeamsPerMember  int `json:"teamsPerMember,omitempty"`  // default 2 (capped at Teams)
	PendingEvery    int `json:"pendingEvery,omitempty"`    // every Nth generated member is a pending invite (0 = none)
	IdPEvery        int `json:"idpEvery,omitempty"`        // every Nth generated member is idp:provisioned (0 = none)
	TeamAdminEvery  int `json:"teamAdminEvery,omitempty"`  // every Nth membership has team role admin (0 = none)
	ManagerEvery    int `json:"managerEvery,omitempty"`    // every Nth generated member is a manager (0 = none)
	IdPTeamsEvery   int `json:"idpTeamsEvery,omitempty"`   // every Nth generated team is idp-provisioned (0 = none)
	StartMemberID   int `json:"startMemberId,omitempty"`   // default: continue after explicit members
	MemberNameStyle int `json:"memberNameStyle,omitempty"` // reserved
}

// LoadSeed decodes a JSON seed file.
func LoadSeed(r io.Reader) (*Seed, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var s Seed
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("sentrytest: decode seed: %w", err)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Seed) validate() error {
	seen := map[string]bool{}
	for i, m := range s.Members {
		e := lower(m.Email)
		if e == "" || !strings.Contains(e, "@") {
			return fmt.Errorf("sentrytest: seed member %d: invalid email %q", i, m.Email)
		}
		if seen[e] {
			return fmt.Errorf("sentrytest: seed member %d: duplicate email %q", i, m.Email)
		}
		seen[e] = true
		if m.OrgRole != "" && rolePriority(m.OrgRole) < 0 {
			return fmt.Errorf("sentrytest: seed member %s: unknown org role %q", m.Email, m.OrgRole)
		}
		for _, f := range m.Flags {
			if !isKnownFlag(f) {
				return fmt.Errorf("sentrytest: seed member %s: unknown flag %q", m.Email, f)
			}
		}
		for slug, role := range m.Teams {
			if role != "" && teamRolePriority(role) < 0 {
				return fmt.Errorf("sentrytest: seed member %s: team %s: unknown team role %q", m.Email, slug, role)
			}
		}
	}
	teams := map[string]bool{}
	for _, t := range s.Teams {
		if t.Slug == "" || teams[t.Slug] {
			return fmt.Errorf("sentrytest: seed team %q: empty or duplicate slug", t.Slug)
		}
		teams[t.Slug] = true
	}
	for _, m := range s.Members {
		for slug := range m.Teams {
			if !teams[slug] {
				return fmt.Errorf("sentrytest: seed member %s: unknown team %q", m.Email, slug)
			}
		}
	}
	for _, p := range s.Projects {
		for _, slug := range p.Teams {
			if !teams[slug] {
				return fmt.Errorf("sentrytest: seed project %s: unknown team %q", p.Slug, slug)
			}
		}
	}
	return nil
}

func isKnownFlag(f string) bool {
	for _, n := range memberFlagNames() {
		if n == f {
			return true
		}
	}
	return false
}

func parseSeedID(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("sentrytest: seed id %q is not a positive integer: %w", s, err)
	}
	return id, nil
}

// build turns the seed into state. now is the sandbox clock.
func (s *Seed) build(orgSlug string, now time.Time) (*state, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	st := newState()
	st.orgID = 4505281256090624
	if s.Org.ID != "" {
		id, err := parseSeedID(s.Org.ID)
		if err != nil {
			return nil, err
		}
		st.orgID = id
	}
	st.orgSlug = orgSlug
	st.orgName = s.Org.Name
	if st.orgName == "" {
		st.orgName = strings.ToUpper(orgSlug[:1]) + orgSlug[1:]
	}
	st.samlEnabled = s.Org.SAML
	st.scimEnabled = s.Org.SCIM
	st.openMembership = s.Org.OpenMembership
	st.scimProvider = s.Org.SCIMProvider
	if st.scimProvider == "" {
		st.scimProvider = "okta"
	}
	st.scimTag = "3f9a1c"
	st.dateCreated = now.Add(-3 * 365 * 24 * time.Hour).UTC()
	base := now.Add(-400 * 24 * time.Hour).UTC()

	// ids: users 2xxxxxx, members 1xxxxxx-ish via newID, teams, projects.
	st.nextID = 100000
	for i, t := range s.Teams {
		id, err := parseSeedID(t.ID)
		if err != nil {
			return nil, err
		}
		if id == 0 {
			id = int64(4000001 + i)
		}
		name := t.Name
		if name == "" {
			name = t.Slug
		}
		st.addTeam(&team{id: id, slug: t.Slug, name: name, idp: t.IdPProvisioned,
			dateCreated: base.Add(time.Duration(i) * time.Hour), members: map[*member]struct{}{}, projects: map[*project]struct{}{}})
	}
	nextUser := int64(3000001)
	nextEmailID := int64(7000001)
	nextMember := int64(1000001)
	for i, sm := range s.Members {
		id, err := parseSeedID(sm.ID)
		if err != nil {
			return nil, err
		}
		if id == 0 {
			id = nextMember
		}
		if id >= nextMember {
			nextMember = id + 1
		}
		role := sm.OrgRole
		if role == "" {
			role = "member"
		}
		created := sm.DateCreated
		if created.IsZero() {
			created = base.Add(time.Duration(i) * 37 * time.Minute)
			if sm.Pending {
				created = now.Add(-time.Duration(48+i) * time.Hour).UTC() // a fresh, unexpired invite
			}
		}
		m := &member{id: id, email: strings.TrimSpace(sm.Email), role: role, flags: map[string]bool{},
			teams: map[*team]string{}, dateCreated: created.UTC()}
		for _, f := range sm.Flags {
			m.flags[f] = true
		}
		if !sm.Pending {
			uid, err := parseSeedID(sm.UserID)
			if err != nil {
				return nil, err
			}
			if uid == 0 {
				uid = nextUser
				nextUser++
			}
			name := sm.Name
			if name == "" {
				name = nameFromEmail(sm.Email)
			}
			u := &user{id: uid, name: name, email: m.email, dateJoined: created.UTC(), has2fa: sm.Has2FA, lastLogin: sm.LastLogin}
			u.emails = append(u.emails, userEmail{id: nextEmailID, email: u.email, verified: true})
			nextEmailID++
			for _, e := range sm.SecondaryEmails {
				u.emails = append(u.emails, userEmail{id: nextEmailID, email: e.Email, verified: e.Verified})
				nextEmailID++
			}
			st.addUser(u)
			m.user = u
		} else {
			m.inviteToken = fmt.Sprintf("%032x", id*7919)
			m.inviteExpiry = created.Add(30 * 24 * time.Hour)
		}
		slugs := make([]string, 0, len(sm.Teams))
		for slug := range sm.Teams {
			slugs = append(slugs, slug)
		}
		sort.Strings(slugs)
		for _, slug := range slugs {
			st.setMemberTeam(m, st.teamBySlug[slug], normalizeTeamRole(role, sm.Teams[slug]))
		}
		st.addMember(m)
	}
	for _, sm := range s.Members {
		if sm.InvitedBy == "" {
			continue
		}
		m := st.memberByEmail[lower(sm.Email)]
		if inv := st.memberByEmail[lower(sm.InvitedBy)]; inv != nil && inv.user != nil {
			st.setInviter(m, inv.user)
		}
	}
	if g := s.Generate; g != nil {
		if g.StartMemberID > 0 && int64(g.StartMemberID) >= nextMember {
			nextMember = int64(g.StartMemberID)
		}
		generate(st, g, &nextMember, &nextUser, &nextEmailID, base)
	}
	for i, p := range s.Projects {
		id, err := parseSeedID(p.ID)
		if err != nil {
			return nil, err
		}
		if id == 0 {
			id = int64(6000001 + i)
		}
		name := p.Name
		if name == "" {
			name = p.Slug
		}
		pr := &project{id: id, slug: p.Slug, name: name, platform: p.Platform, dateCreated: base.Add(time.Duration(i) * time.Hour), teams: map[*team]struct{}{}}
		for _, slug := range p.Teams {
			t := st.teamBySlug[slug]
			pr.teams[t] = struct{}{}
			t.projects[pr] = struct{}{}
		}
		st.projects[pr.id] = pr
		st.projectSlug[pr.slug] = pr
	}
	for i, t := range s.OrgAuthTokens {
		id, err := parseSeedID(t.ID)
		if err != nil {
			return nil, err
		}
		if id == 0 {
			id = int64(9001 + i)
		}
		created := t.Created
		if created.IsZero() {
			created = now.Add(-time.Duration(30*(i+1)) * 24 * time.Hour)
		}
		tok := &orgToken{id: id, name: t.Name, token: t.Token, dateCreated: created.UTC(), active: true}
		if tok.token == "" {
			tok.token = fmt.Sprintf("sntrys_seed%08d%032x", id, id*104729)
		}
		if !t.LastUsed.IsZero() {
			lu := t.LastUsed.UTC()
			tok.dateLastUsed = &lu
		}
		var actor int64
		if t.CreatedBy != "" {
			u := st.userByEmail[lower(t.CreatedBy)]
			if u == nil {
				return nil, fmt.Errorf("sentrytest: seed org auth token %q: creator %q is not a seeded user", t.Name, t.CreatedBy)
			}
			actor = u.id
			tok.creatorID = u.id
			tok.creatorEmail = u.email
		}
		st.tokens[tok.id] = tok
		st.tokenByText[tok.token] = tok
		st.addAudit(&auditEntry{actorUserID: actor, event: "org-auth-token.create", ip: "10.0.0.7",
			note: "added org auth token " + tok.name, targetObject: tok.id,
			data: map[string]any{"name": tok.name, "scopes": []string{"org:ci"}}, dateCreated: tok.dateCreated})
	}
	sort.SliceStable(st.audit, func(i, j int) bool { return st.audit[i].dateCreated.Before(st.audit[j].dateCreated) })
	for i, e := range st.audit {
		e.id = int64(i + 1)
	}
	if nextMember > st.nextID {
		st.nextID = nextMember
	}
	if nextUser > st.nextID {
		st.nextID = nextUser
	}
	if nextEmailID > st.nextID {
		st.nextID = nextEmailID
	}
	return st, nil
}

func generate(st *state, g *SeedGenerate, nextMember, nextUser, nextEmailID *int64, base time.Time) {
	gteams := make([]*team, 0, g.Teams)
	for i := 0; i < g.Teams; i++ {
		slug := fmt.Sprintf("team-%04d", i+1)
		if st.teamBySlug[slug] != nil {
			continue
		}
		t := &team{id: int64(5000001 + i), slug: slug, name: fmt.Sprintf("Team %04d", i+1),
			idp: g.IdPTeamsEvery > 0 && (i+1)%g.IdPTeamsEvery == 0, dateCreated: base,
			members: map[*member]struct{}{}, projects: map[*project]struct{}{}}
		st.addTeam(t)
		gteams = append(gteams, t)
	}
	per := g.TeamsPerMember
	if per == 0 {
		per = 2
	}
	if per > len(gteams) {
		per = len(gteams)
	}
	membership := 0
	for i := 0; i < g.Members; i++ {
		n := i + 1
		email := fmt.Sprintf("user%06d@%s.test", n, st.orgSlug)
		if st.memberByEmail[email] != nil {
			continue
		}
		role := "member"
		if g.ManagerEvery > 0 && n%g.ManagerEvery == 0 {
			role = "manager"
		}
		m := &member{id: *nextMember, email: email, role: role, flags: map[string]bool{}, teams: map[*team]string{},
			dateCreated: base.Add(time.Duration(i) * time.Second)}
		*nextMember++
		if g.IdPEvery > 0 && n%g.IdPEvery == 0 {
			m.flags[flagIdPProvisioned] = true
			m.flags["sso:linked"] = true
		}
		if g.PendingEvery > 0 && n%g.PendingEvery == 0 {
			m.inviteToken = fmt.Sprintf("%032x", m.id*7919)
			m.inviteExpiry = m.dateCreated.Add(30 * 24 * time.Hour)
		} else {
			u := &user{id: *nextUser, name: fmt.Sprintf("User %06d", n), email: email, dateJoined: m.dateCreated}
			*nextUser++
			u.emails = []userEmail{{id: *nextEmailID, email: email, verified: true}}
			*nextEmailID++
			st.addUser(u)
			m.user = u
		}
		for k := 0; k < per; k++ {
			t := gteams[(i*per+k*7)%len(gteams)]
			membership++
			role := ""
			if g.TeamAdminEvery > 0 && membership%g.TeamAdminEvery == 0 {
				role = "admin"
			}
			st.setMemberTeam(m, t, normalizeTeamRole(m.role, role))
		}
		st.addMember(m)
	}
}

func nameFromEmail(email string) string {
	local, _, _ := strings.Cut(email, "@")
	parts := strings.FieldsFunc(local, func(r rune) bool { return r == '.' || r == '_' || r == '-' })
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, " ")
}

// DemoSeed returns the realistic demo organization "acme" served by `jml run`.
func DemoSeed() *Seed {
	mem := func(email, role string, teams map[string]string, flags ...string) SeedMember {
		return SeedMember{Email: email, OrgRole: role, Teams: teams, Flags: flags}
	}
	s := &Seed{
		Org: SeedOrg{Slug: "acme", Name: "Acme Corp", SAML: true, SCIM: true, SCIMProvider: "okta"},
		Teams: []SeedTeam{
			{Slug: "payments", Name: "Payments"},
			{Slug: "platform", Name: "Platform"},
			{Slug: "mobile", Name: "Mobile"},
			{Slug: "security", Name: "Security"},
			{Slug: "data", Name: "Data"},
			{Slug: "architecture", Name: "Architecture"},
			{Slug: "okta-engineering", Name: "Okta Engineering", IdPProvisioned: true},
		},
		Members: []SeedMember{
			mem("olivia.owner@acme.test", "owner", map[string]string{"platform": "admin", "security": ""}, "sso:linked"),
			mem("oscar.owner@acme.test", "owner", map[string]string{"architecture": ""}, "sso:linked"),
			mem("maya.manager@acme.test", "manager", map[string]string{"payments": "admin", "data": ""}, "sso:linked"),
			mem("jml-bot@acme.test", "manager", nil),
			{Email: "jane.doe@acme.test", OrgRole: "member", Flags: []string{"sso:linked"},
				Teams:           map[string]string{"payments": "admin", "mobile": "contributor"},
				SecondaryEmails: []SeedEmail{{Email: "jane@janedoe.example", Verified: true}, {Email: "j.doe@old-acme.test", Verified: false}},
				InvitedBy:       "maya.manager@acme.test"},
			{Email: "john.smith@acme.test", OrgRole: "member", Flags: []string{"idp:provisioned", "sso:linked"},
				Teams:           map[string]string{"platform": "contributor", "okta-engineering": ""},
				SecondaryEmails: []SeedEmail{{Email: "johnny.smith@acme-legacy.test", Verified: true}}},
			{Email: "alice.nguyen@acme.test", OrgRole: "member", Flags: []string{"sso:linked"},
				Teams:           map[string]string{"payments": "", "data": "admin"},
				SecondaryEmails: []SeedEmail{{Email: "alice.nguyen@personal.example", Verified: false}}},
			mem("bob.martin@acme.test", "member", map[string]string{"platform": "admin"}, "sso:linked"),
			mem("carlos.garcia@acme.test", "member", map[string]string{"mobile": "admin"}, "sso:linked"),
			mem("diana.prince@acme.test", "member", map[string]string{"security": "admin"}, "sso:linked"),
			mem("ethan.hunt@acme.test", "member", map[string]string{"security": ""}, "sso:linked"),
			mem("fatima.khan@acme.test", "member", map[string]string{"data": "", "architecture": "admin"}, "sso:linked"),
			mem("george.miller@acme.test", "member", map[string]string{"payments": ""}, "sso:linked"),
			mem("hannah.schmidt@acme.test", "member", map[string]string{"mobile": ""}, "sso:linked"),
			mem("ivan.petrov@acme.test", "member", map[string]string{"platform": "", "okta-engineering": ""}, "idp:provisioned", "idp:role-restricted", "sso:linked"),
			mem("julia.rossi@acme.test", "member", map[string]string{"data": ""}, "sso:linked"),
			mem("kenji.tanaka@acme.test", "member", map[string]string{"mobile": "", "platform": ""}, "sso:linked"),
			mem("laura.chen@acme.test", "member", map[string]string{"okta-engineering": ""}, "idp:provisioned", "sso:linked"),
			mem("mohammed.ali@acme.test", "member", map[string]string{"payments": "", "security": ""}, "sso:linked"),
			mem("nora.jensen@acme.test", "member", map[string]string{"architecture": ""}),
			mem("omar.haddad@acme.test", "member", map[string]string{"data": ""}, "sso:linked"),
			mem("priya.patel@acme.test", "member", map[string]string{"platform": "", "architecture": ""}, "sso:linked"),
			mem("quentin.dubois@acme.test", "member", nil, "sso:invalid"),
			mem("rachel.green@acme.test", "billing", nil, "sso:linked"),
			mem("samuel.okafor@acme.test", "member", map[string]string{"mobile": "", "payments": ""}, "sso:linked"),
			mem("tina.kowalski@acme.test", "member", map[string]string{"security": "", "okta-engineering": ""}, "idp:provisioned", "sso:linked"),
			mem("umar.farouk@acme.test", "admin", map[string]string{"platform": ""}, "sso:linked"),
			mem("victoria.lee@acme.test", "member", map[string]string{"data": "admin"}, "sso:linked"),
			{Email: "new.hire@acme.test", OrgRole: "member", Pending: true, Teams: map[string]string{"payments": ""}, InvitedBy: "maya.manager@acme.test"},
			{Email: "contractor.temp@acme.test", OrgRole: "member", Pending: true, InvitedBy: "olivia.owner@acme.test"},
			{Email: "sam.scim@acme.test", OrgRole: "member", Pending: true, Flags: []string{"idp:provisioned"}},
		},
		Projects: []SeedProject{
			{Slug: "checkout-api", Name: "checkout-api", Platform: "go", Teams: []string{"payments"}},
			{Slug: "ledger", Name: "ledger", Platform: "python", Teams: []string{"payments", "data"}},
			{Slug: "web-frontend", Name: "web-frontend", Platform: "javascript-react", Teams: []string{"platform"}},
			{Slug: "ios-app", Name: "ios-app", Platform: "apple-ios", Teams: []string{"mobile"}},
			{Slug: "android-app", Name: "android-app", Platform: "android", Teams: []string{"mobile"}},
			{Slug: "etl-pipeline", Name: "etl-pipeline", Platform: "python", Teams: []string{"data"}},
			{Slug: "auth-gateway", Name: "auth-gateway", Platform: "go", Teams: []string{"security", "platform"}},
		},
		OrgAuthTokens: []SeedOrgAuthToken{
			{Name: "ci-release-upload", CreatedBy: "jane.doe@acme.test"},
			{Name: "sourcemaps-web", CreatedBy: "bob.martin@acme.test"},
			{Name: "ios-dsyms", CreatedBy: "jane.doe@acme.test"},
			{Name: "terraform", CreatedBy: "olivia.owner@acme.test"},
		},
	}
	return s
}
