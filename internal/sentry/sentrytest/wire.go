package sentrytest

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"
)

// Wire structs: the sandbox's own JSON shapes, written from Sentry's
// serializers and the OpenAPI subset, deliberately independent of the
// client's structs.

const sentryTime = "2006-01-02T15:04:05.000000Z"

func ts(t time.Time) string { return t.UTC().Format(sentryTime) }

func tsPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := ts(*t)
	return &s
}

type wireAvatar struct {
	AvatarType string  `json:"avatarType"`
	AvatarUUID *string `json:"avatarUuid"`
	AvatarURL  *string `json:"avatarUrl"`
}

type wireUserEmail struct {
	ID         string `json:"id"`
	Email      string `json:"email"`
	IsVerified bool   `json:"is_verified"`
}

type wireUser struct {
	ID              string          `json:"id"`
	Name            string          `json:"name"`
	Username        string          `json:"username"`
	Email           string          `json:"email"`
	AvatarURL       string          `json:"avatarUrl"`
	IsActive        bool            `json:"isActive"`
	HasPasswordAuth bool            `json:"hasPasswordAuth"`
	IsManaged       bool            `json:"isManaged"`
	DateJoined      string          `json:"dateJoined"`
	LastLogin       *string         `json:"lastLogin"`
	Has2FA          bool            `json:"has2fa"`
	LastActive      *string         `json:"lastActive"`
	IsSuperuser     bool            `json:"isSuperuser"`
	IsStaff         bool            `json:"isStaff"`
	Experiments     map[string]any  `json:"experiments"`
	Emails          []wireUserEmail `json:"emails"`
	Avatar          wireAvatar      `json:"avatar"`
	IsSuspended     bool            `json:"isSuspended"`
}

type wireMember struct {
	ID           string          `json:"id"`
	Email        string          `json:"email"`
	Name         string          `json:"name"`
	User         *wireUser       `json:"user"`
	Role         string          `json:"role"`
	RoleName     string          `json:"roleName"`
	OrgRole      string          `json:"orgRole"`
	Pending      bool            `json:"pending"`
	Expired      bool            `json:"expired"`
	Flags        map[string]bool `json:"flags"`
	DateCreated  string          `json:"dateCreated"`
	InviteStatus string          `json:"inviteStatus"`
	InviterName  *string         `json:"inviterName"`
}

type wireTeamRole struct {
	TeamSlug string  `json:"teamSlug"`
	Role     *string `json:"role"`
}

type wireOrgRoleDesc struct {
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	Desc               string   `json:"desc"`
	Scopes             []string `json:"scopes"`
	Allowed            bool     `json:"allowed"`
	IsAllowed          bool     `json:"isAllowed"`
	IsRetired          bool     `json:"isRetired"`
	IsTeamRolesAllowed bool     `json:"isTeamRolesAllowed"`
	IsGlobal           bool     `json:"isGlobal"`
	IsGlobalSnake      bool     `json:"is_global"`
	MinimumTeamRole    string   `json:"minimumTeamRole"`
}

type wireTeamRoleDesc struct {
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	Desc               string   `json:"desc"`
	Scopes             []string `json:"scopes"`
	Allowed            bool     `json:"allowed"`
	IsAllowed          bool     `json:"isAllowed"`
	IsRetired          bool     `json:"isRetired"`
	IsTeamRolesAllowed bool     `json:"isTeamRolesAllowed"`
	IsMinimumRoleFor   *string  `json:"isMinimumRoleFor"`
}

type wireMemberDetail struct {
	wireMember
	Teams        []string           `json:"teams"`
	TeamRoles    []wireTeamRole     `json:"teamRoles"`
	InviteLink   *string            `json:"invite_link"`
	IsOnlyOwner  bool               `json:"isOnlyOwner"`
	OrgRoleList  []wireOrgRoleDesc  `json:"orgRoleList"`
	TeamRoleList []wireTeamRoleDesc `json:"teamRoleList"`
}

type wireTeam struct {
	ID          string          `json:"id"`
	Slug        string          `json:"slug"`
	Name        string          `json:"name"`
	DateCreated *string         `json:"dateCreated"`
	IsMember    bool            `json:"isMember"`
	TeamRole    *string         `json:"teamRole"`
	Flags       map[string]bool `json:"flags"`
	Access      []string        `json:"access"`
	HasAccess   bool            `json:"hasAccess"`
	IsPending   bool            `json:"isPending"`
	MemberCount int             `json:"memberCount"`
	Avatar      wireAvatar      `json:"avatar"`
	// Expandable (TeamSerializer): absent unless expanded.
	ExternalTeams *[]any            `json:"externalTeams,omitempty"`
	Organization  *wireOrganization `json:"organization,omitempty"`
	Projects      *[]wireProject    `json:"projects,omitempty"`
}

// wireOrganization is OrganizationSerializer's shape (the base organization
// fields Sentry embeds in a team GET).
type wireOrganization struct {
	ID                         string            `json:"id"`
	Slug                       string            `json:"slug"`
	Status                     map[string]string `json:"status"`
	Name                       string            `json:"name"`
	DateCreated                string            `json:"dateCreated"`
	IsEarlyAdopter             bool              `json:"isEarlyAdopter"`
	Require2FA                 bool              `json:"require2FA"`
	RequireEmailVerification   bool              `json:"requireEmailVerification"`
	Avatar                     wireAvatar        `json:"avatar"`
	Links                      map[string]string `json:"links"`
	HasAuthProvider            bool              `json:"hasAuthProvider"`
	AllowMemberInvite          bool              `json:"allowMemberInvite"`
	AllowMemberProjectCreation bool              `json:"allowMemberProjectCreation"`
	AllowSuperuserAccess       bool              `json:"allowSuperuserAccess"`
	Features                   []string          `json:"features"`
}

func wireOrg(st *state) *wireOrganization {
	return &wireOrganization{ID: strconv.FormatInt(st.orgID, 10), Slug: st.orgSlug,
		Status: map[string]string{"id": "active", "name": "active"}, Name: st.orgName,
		DateCreated: ts(st.dateCreated), Avatar: wireAvatar{AvatarType: "letter_avatar"},
		Links: map[string]string{"organizationUrl": "https://" + st.orgSlug + ".sentry.io",
			"regionUrl": "https://us.sentry.io"},
		HasAuthProvider: st.samlEnabled, AllowMemberInvite: true, AllowMemberProjectCreation: true,
		AllowSuperuserAccess: true, Features: []string{"team-roles"}}
}

type wireTeamRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Slug string `json:"slug"`
}

// wireProject covers the union of the fields the OpenAPI requires for the
// project shapes embedded in teams and returned by team/projects.
type wireProject struct {
	ID                         string         `json:"id"`
	Slug                       string         `json:"slug"`
	Name                       string         `json:"name"`
	Platform                   *string        `json:"platform"`
	DateCreated                string         `json:"dateCreated"`
	IsBookmarked               bool           `json:"isBookmarked"`
	IsMember                   bool           `json:"isMember"`
	Features                   []string       `json:"features"`
	FirstEvent                 *string        `json:"firstEvent"`
	FirstTransactionEvent      bool           `json:"firstTransactionEvent"`
	Access                     []string       `json:"access"`
	HasAccess                  bool           `json:"hasAccess"`
	HasFeedbacks               bool           `json:"hasFeedbacks"`
	HasFlags                   bool           `json:"hasFlags"`
	HasMinifiedStackTrace      bool           `json:"hasMinifiedStackTrace"`
	HasMonitors                bool           `json:"hasMonitors"`
	HasNewFeedbacks            bool           `json:"hasNewFeedbacks"`
	HasProfiles                bool           `json:"hasProfiles"`
	HasReplays                 bool           `json:"hasReplays"`
	HasSessions                bool           `json:"hasSessions"`
	HasInsightsHTTP            bool           `json:"hasInsightsHttp"`
	HasInsightsDB              bool           `json:"hasInsightsDb"`
	HasInsightsAssets          bool           `json:"hasInsightsAssets"`
	HasInsightsAppStart        bool           `json:"hasInsightsAppStart"`
	HasInsightsScreenLoad      bool           `json:"hasInsightsScreenLoad"`
	HasInsightsVitals          bool           `json:"hasInsightsVitals"`
	HasInsightsCaches          bool           `json:"hasInsightsCaches"`
	HasInsightsQueues          bool           `json:"hasInsightsQueues"`
	HasInsightsAgentMonitoring bool           `json:"hasInsightsAgentMonitoring"`
	HasInsightsMCP             bool           `json:"hasInsightsMCP"`
	HasLogs                    bool           `json:"hasLogs"`
	HasTraceMetrics            bool           `json:"hasTraceMetrics"`
	HasUserReports             bool           `json:"hasUserReports"`
	IsInternal                 bool           `json:"isInternal"`
	IsPublic                   bool           `json:"isPublic"`
	Avatar                     wireAvatar     `json:"avatar"`
	Color                      string         `json:"color"`
	Status                     string         `json:"status"`
	Team                       *wireTeamRef   `json:"team,omitempty"` // absent when the project has no team (ProjectWithTeamSerializer)
	Teams                      []wireTeamRef  `json:"teams"`
	Platforms                  []string       `json:"platforms"`
	Environments               []string       `json:"environments"`
	LatestRelease              *struct{}      `json:"latestRelease"`
	LatestDeploys              map[string]any `json:"latestDeploys"`
	Options                    map[string]any `json:"options"`
}

func (s *Sandbox) wireUser(u *user) *wireUser {
	w := &wireUser{
		ID: strconv.FormatInt(u.id, 10), Name: u.name, Username: u.email, Email: u.email,
		AvatarURL: "https://gravatar.com/avatar/" + strconv.FormatInt(u.id*2654435761%1000003, 16) + "?s=32&d=mm",
		IsActive:  true, HasPasswordAuth: false, IsManaged: false, DateJoined: ts(u.dateJoined),
		Has2FA: u.has2fa, LastLogin: tsPtr(u.lastLogin), Experiments: map[string]any{}, Avatar: wireAvatar{AvatarType: "letter_avatar"},
	}
	w.Emails = make([]wireUserEmail, 0, len(u.emails))
	for _, e := range u.emails {
		w.Emails = append(w.Emails, wireUserEmail{ID: strconv.FormatInt(e.id, 10), Email: e.email, IsVerified: e.verified})
	}
	return w
}

func (s *Sandbox) wireMember(st *state, m *member) wireMember {
	w := wireMember{
		ID: m.idStr(), Email: m.Email(), Name: m.Email(), Role: m.role, RoleName: roleName(m.role),
		OrgRole: m.role, Pending: m.pending(), Flags: make(map[string]bool, 6),
		DateCreated: ts(m.dateCreated), InviteStatus: "approved",
	}
	if m.user != nil {
		w.User = s.wireUser(m.user)
		w.Name = m.user.name
	} else {
		w.Expired = !m.inviteExpiry.IsZero() && s.now().After(m.inviteExpiry)
	}
	for _, f := range memberFlagNames() {
		w.Flags[f] = m.flags[f]
	}
	if m.inviterName != "" {
		n := m.inviterName
		w.InviterName = &n
	}
	return w
}

// memberListJSON returns the cached list representation of m.
func (s *Sandbox) memberListJSON(st *state, m *member) []byte {
	if p := m.cache.Load(); p != nil {
		return *p
	}
	b, _ := json.Marshal(s.wireMember(st, m))
	if m.pending() {
		// "expired" depends on the clock: don't cache pending invites.
		return b
	}
	m.cache.Store(&b)
	return b
}

func sortedTeamsOf(m *member) []*team {
	ts := make([]*team, 0, len(m.teams))
	for t := range m.teams {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].slug < ts[j].slug })
	return ts
}

func (s *Sandbox) wireMemberDetail(st *state, m *member, caller *principal) wireMemberDetail {
	d := wireMemberDetail{wireMember: s.wireMember(st, m), IsOnlyOwner: st.isOnlyOwner(m)}
	d.Teams = []string{}
	d.TeamRoles = []wireTeamRole{}
	for _, t := range sortedTeamsOf(m) {
		d.Teams = append(d.Teams, t.slug)
		d.TeamRoles = append(d.TeamRoles, wireTeamRole{TeamSlug: t.slug, Role: nullable(m.teams[t])})
	}
	if m.pending() {
		link := "https://" + st.orgSlug + ".sentry.io/accept/" + m.idStr() + "/" + m.inviteToken + "/"
		d.InviteLink = &link
	}
	callerPrio := -1
	if caller != nil && caller.member != nil {
		callerPrio = rolePriority(caller.member.role)
	}
	for _, r := range roleTable() {
		allowed := r.priority <= callerPrio && !r.retired
		d.OrgRoleList = append(d.OrgRoleList, wireOrgRoleDesc{ID: r.id, Name: r.name, Desc: r.desc, Scopes: r.scopes,
			Allowed: allowed, IsAllowed: allowed, IsRetired: r.retired, IsTeamRolesAllowed: r.teamRolesAllowed,
			IsGlobal: r.id != "member" && r.id != "billing", IsGlobalSnake: r.id != "member" && r.id != "billing",
			MinimumTeamRole: r.minimumTeamRole})
	}
	for _, r := range teamRoleTable() {
		var minFor *string
		if r.isMinimumRoleFor != "" {
			v := r.isMinimumRoleFor
			minFor = &v
		}
		d.TeamRoleList = append(d.TeamRoleList, wireTeamRoleDesc{ID: r.id, Name: r.name, Desc: r.desc, Scopes: r.scopes,
			Allowed: true, IsAllowed: true, IsTeamRolesAllowed: true, IsMinimumRoleFor: minFor})
	}
	return d
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// memberCount is get_member_totals: every membership of an approved
// member, pending invites included (their invite_status is approved).
func memberCount(t *team) int { return len(t.members) }

// wireTeam is TeamSerializer with the given expansions ("projects",
// "externalTeams", "organization").
func (s *Sandbox) wireTeam(st *state, t *team, caller *principal, expand ...string) wireTeam {
	dc := ts(t.dateCreated)
	w := wireTeam{ID: t.idStr(), Slug: t.slug, Name: t.name, DateCreated: &dc,
		Flags: map[string]bool{"idp:provisioned": t.idp}, Access: []string{}, HasAccess: true,
		MemberCount: memberCount(t), Avatar: wireAvatar{AvatarType: "letter_avatar"}}
	if caller != nil && caller.member != nil {
		if role, ok := caller.member.teams[t]; ok {
			w.IsMember = true
			// TeamSerializer: teamRole is the stored role (null when none);
			// access is the effective role's scopes.
			r := effectiveTeamRole(caller.member.role, role)
			w.TeamRole = nullable(role)
			for _, tr := range teamRoleTable() {
				if tr.id == r {
					w.Access = tr.scopes
				}
			}
		}
	}
	if contains(expand, "projects") {
		ps := []wireProject{}
		for _, p := range sortedProjects(t.projects) {
			ps = append(ps, s.wireProject(p))
		}
		w.Projects = &ps
	}
	if contains(expand, "externalTeams") {
		w.ExternalTeams = &[]any{} // no external (Slack, GitHub…) team links are modelled
	}
	if contains(expand, "organization") {
		w.Organization = wireOrg(st)
	}
	return w
}

func sortedProjects(set map[*project]struct{}) []*project {
	ps := make([]*project, 0, len(set))
	for p := range set {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].slug < ps[j].slug })
	return ps
}

func (s *Sandbox) wireProject(p *project) wireProject {
	w := wireProject{ID: strconv.FormatInt(p.id, 10), Slug: p.slug, Name: p.name, DateCreated: ts(p.dateCreated),
		Features: []string{}, Access: []string{}, HasAccess: true, Avatar: wireAvatar{AvatarType: "letter_avatar"},
		Color: "#3f70bf", Status: "active", Teams: []wireTeamRef{}, Platforms: []string{}, Environments: []string{"production"},
		Options: map[string]any{}}
	if p.platform != "" {
		pl := p.platform
		w.Platform = &pl
		w.Platforms = []string{pl}
	}
	teams := make([]*team, 0, len(p.teams))
	for t := range p.teams {
		teams = append(teams, t)
	}
	sort.Slice(teams, func(i, j int) bool { return teams[i].slug < teams[j].slug })
	for _, t := range teams {
		w.Teams = append(w.Teams, wireTeamRef{ID: t.idStr(), Name: t.name, Slug: t.slug})
	}
	if len(w.Teams) > 0 {
		first := w.Teams[0]
		w.Team = &first
	}
	return w
}
