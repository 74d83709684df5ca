package sentrytest

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memberFlagNames lists the flags Sentry reports on every member object.
func memberFlagNames() []string {
	return []string{
		"idp:provisioned",
		"idp:role-restricted",
		"sso:linked",
		"sso:invalid",
		"member-limit:restricted",
		"partnership:restricted",
	}
}

const (
	flagIdPProvisioned  = "idp:provisioned"
	flagIdPRoleRestrict = "idp:role-restricted"
	flagPartnership     = "partnership:restricted"
)

// orgRole mirrors an entry of Sentry's SENTRY_ROLES.
type orgRole struct {
	id, name, desc   string
	priority         int
	scopes           []string
	minimumTeamRole  string
	retired          bool
	teamRolesAllowed bool
}

type teamRole struct {
	id, name, desc   string
	priority         int
	scopes           []string
	isMinimumRoleFor string
}

// roleTable returns the org roles lowest→highest priority. It is a function
// (not a package variable) so the package has no mutable state.
func roleTable() []orgRole {
	memberScopes := []string{
		"event:read", "event:write", "event:admin", "project:read", "project:releases",
		"org:read", "member:read", "team:read", "alerts:read", "alerts:write",
	}
	adminScopes := append(append([]string(nil), memberScopes...), "team:write", "team:admin", "project:write", "project:admin", "org:integrations")
	managerScopes := append(append([]string(nil), adminScopes...), "member:invite", "member:write", "member:admin", "org:write")
	ownerScopes := append(append([]string(nil), managerScopes...), "org:admin", "org:billing")
	return []orgRole{
		{id: "billing", name: "Billing", desc: "Can manage payment and compliance details.", priority: 0,
			scopes: []string{"org:billing"}, minimumTeamRole: "contributor"},
		{id: "member", name: "Member", desc: "Members can view and act on events, as well as view most other data within the organization.", priority: 1,
			scopes: memberScopes, minimumTeamRole: "contributor", teamRolesAllowed: true},
		{id: "admin", name: "Admin", desc: "Admin privileges on any teams of which they're a member. They can create new teams and projects, as well as remove teams and projects on which they already hold membership (or all teams, if open membership is enabled). Additionally, they can manage memberships of teams that they are members of. They cannot invite members to the organization.", priority: 2,
			scopes: adminScopes, minimumTeamRole: "admin", retired: true, teamRolesAllowed: true},
		{id: "manager", name: "Manager", desc: "Gains admin access on all teams as well as the ability to add and remove members.", priority: 3,
			scopes: managerScopes, minimumTeamRole: "admin", teamRolesAllowed: true},
		{id: "owner", name: "Owner", desc: "Unrestricted access to the organization, its data, and its settings. Can add, modify, and delete projects and members, as well as make billing and plan changes.", priority: 4,
			scopes: ownerScopes, minimumTeamRole: "admin", teamRolesAllowed: true},
	}
}

func teamRoleTable() []teamRole {
	return []teamRole{
		{id: "contributor", name: "Contributor", desc: "Contributors can view and act on events, as well as view most other data within the team's projects.", priority: 0,
			scopes: []string{"event:read", "event:write", "event:admin", "project:releases", "project:read", "org:read", "member:read", "team:read", "alerts:read", "alerts:write"}},
		{id: "admin", name: "Team Admin", desc: "Admin privileges on the team. They can create and remove projects, and can manage the team's memberships.", priority: 1,
			scopes:           []string{"event:read", "event:write", "event:admin", "project:releases", "project:read", "project:write", "project:admin", "org:read", "member:read", "team:read", "team:write", "team:admin", "alerts:read", "alerts:write"},
			isMinimumRoleFor: "admin"},
	}
}

func findOrgRole(id string) (orgRole, bool) {
	for _, r := range roleTable() {
		if r.id == id {
			return r, true
		}
	}
	return orgRole{}, false
}

func rolePriority(id string) int {
	switch id {
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

func minTeamRoleFor(orgRoleID string) string {
	switch orgRoleID {
	case "admin", "manager", "owner":
		return "admin"
	}
	return "contributor"
}

func roleName(id string) string {
	switch id {
	case "billing":
		return "Billing"
	case "member":
		return "Member"
	case "admin":
		return "Admin"
	case "manager":
		return "Manager"
	case "owner":
		return "Owner"
	}
	return id
}

func teamRolePriority(id string) int {
	switch id {
	case "contributor":
		return 0
	case "admin":
		return 1
	}
	return -1
}

// normalizeTeamRole returns the team role as Sentry stores it: "" (NULL) when
// the role is at or below the minimum team role implied by the org role.
func normalizeTeamRole(orgRoleID, role string) string {
	if role == "" {
		return ""
	}
	if teamRolePriority(role) <= teamRolePriority(minTeamRoleFor(orgRoleID)) {
		return ""
	}
	return role
}

// effectiveTeamRole is max(stored, minimum for the org role).
func effectiveTeamRole(orgRoleID, stored string) string {
	min := minTeamRoleFor(orgRoleID)
	if teamRolePriority(stored) > teamRolePriority(min) {
		return stored
	}
	return min
}

type userEmail struct {
	id       int64
	email    string
	verified bool
}

type user struct {
	id         int64
	name       string
	email      string // primary
	emails     []userEmail
	dateJoined time.Time
	has2fa     bool
	lastLogin  *time.Time
}

type member struct {
	id           int64
	email        string // invite email (used when user == nil)
	user         *user
	role         string
	flags        map[string]bool
	teams        map[*team]string // stored team role, "" = NULL
	joined       map[*team]int64  // OrganizationMemberTeam id: the join order
	dateCreated  time.Time
	inviterName  string
	inviterID    int64
	inviteToken  string
	inviteExpiry time.Time

	cache atomic.Pointer[[]byte] // cached list JSON; nil = stale
}

func (m *member) idStr() string { return strconv.FormatInt(m.id, 10) }

func (m *member) Email() string {
	if m.user != nil {
		return m.user.email
	}
	return m.email
}

func (m *member) pending() bool { return m.user == nil }

func (m *member) invalidate() { m.cache.Store(nil) }

type team struct {
	id          int64
	slug        string
	name        string
	idp         bool
	dateCreated time.Time
	members     map[*member]struct{}
	projects    map[*project]struct{}
}

func (t *team) idStr() string { return strconv.FormatInt(t.id, 10) }

type project struct {
	id          int64
	slug        string
	name        string
	platform    string
	dateCreated time.Time
	teams       map[*team]struct{}
}

type orgToken struct {
	id           int64
	name         string
	token        string
	creatorID    int64 // user id, 0 = unknown
	creatorEmail string
	dateCreated  time.Time
	dateLastUsed *time.Time
	active       bool
}

type auditEntry struct {
	id           int64
	actorUserID  int64  // 0 = not a user
	actorName    string // for integrations
	event        string
	ip           string
	note         string
	targetObject int64
	targetUserID int64
	data         map[string]any
	dateCreated  time.Time
}

// auditEventNames is the "options" list of the audit-log endpoint.
func auditEventNames() []string {
	return []string{
		"member.invite", "member.add", "member.accept-invite", "member.edit", "member.remove",
		"member.join-team", "member.leave-team", "member.pending", "member.reinvite",
		"org.create", "org.edit", "org.remove", "org.restore",
		"team.create", "team.edit", "team.remove",
		"project.create", "project.edit", "project.remove", "project-team.add", "project-team.remove",
		"sso.enable", "sso.disable", "sso.edit", "sso-identity.link",
		"api-key.create", "api-key.edit", "api-key.remove",
		"org-auth-token.create", "org-auth-token.remove",
		"internal-integration.create", "internal-integration.add-token", "internal-integration.remove-token",
		"invite-request.create", "invite-request.remove",
	}
}

// state is the whole in-memory organization. Guarded by Sandbox.mu.
type state struct {
	orgID          int64
	orgSlug        string
	orgName        string
	samlEnabled    bool
	scimEnabled    bool
	openMembership bool
	scimProvider   string // "okta" or "azure"; azure omits "active"
	scimToken      string
	scimTag        string // 6 hex digits of the SCIM integration name
	dateCreated    time.Time

	nextID int64

	users       map[int64]*user
	userByEmail map[string]*user // primary email, lower-case
	userByAlt   map[string]*user // secondary emails (verified or not), lower-case

	members       map[int64]*member
	memberOrder   []*member          // sorted by id
	memberByEmail map[string]*member // lower-case effective email
	memberByUser  map[int64]*member
	// invitesBy indexes members by the user id that invited them
	// (inviterID), so removing a member finds the pending invites its user
	// sent without scanning every member.
	invitesBy map[int64]map[*member]struct{}
	scimOrder []*member // pending invites by email, then members by id; nil = stale

	teams      map[int64]*team
	teamBySlug map[string]*team
	teamOrder  []*team // sorted by slug; nil = stale
	// orderMu guards building the lazy orders above: readers holding the
	// sandbox's read lock may build them concurrently (writers clear them
	// under the write lock).
	orderMu     sync.Mutex
	projects    map[int64]*project
	projectSlug map[string]*project

	tokens      map[int64]*orgToken
	tokenByText map[string]*orgToken

	audit []*auditEntry // oldest first
}

func newState() *state {
	return &state{
		nextID:        1000,
		users:         map[int64]*user{},
		userByEmail:   map[string]*user{},
		userByAlt:     map[string]*user{},
		members:       map[int64]*member{},
		memberByEmail: map[string]*member{},
		memberByUser:  map[int64]*member{},
		invitesBy:     map[int64]map[*member]struct{}{},
		teams:         map[int64]*team{},
		teamBySlug:    map[string]*team{},
		projects:      map[int64]*project{},
		projectSlug:   map[string]*project{},
		tokens:        map[int64]*orgToken{},
		tokenByText:   map[string]*orgToken{},
	}
}

func (st *state) newID() int64 {
	st.nextID++
	return st.nextID
}

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func (st *state) addUser(u *user) {
	st.users[u.id] = u
	st.userByEmail[lower(u.email)] = u
	for _, e := range u.emails {
		if !strings.EqualFold(e.email, u.email) {
			st.userByAlt[lower(e.email)] = u
		}
	}
}

// addMember appends m; ids are allocated increasing so order stays sorted,
// but seeds may give explicit ids, so fall back to an insert.
func (st *state) addMember(m *member) {
	st.members[m.id] = m
	n := len(st.memberOrder)
	if n == 0 || st.memberOrder[n-1].id < m.id {
		st.memberOrder = append(st.memberOrder, m)
	} else {
		i := sort.Search(n, func(i int) bool { return st.memberOrder[i].id >= m.id })
		st.memberOrder = append(st.memberOrder, nil)
		copy(st.memberOrder[i+1:], st.memberOrder[i:])
		st.memberOrder[i] = m
	}
	st.memberByEmail[lower(m.Email())] = m
	if m.user != nil {
		st.memberByUser[m.user.id] = m
	}
	st.indexInviter(m)
	st.scimOrder = nil
}

// setInviter records that the user u invited m.
func (st *state) setInviter(m *member, u *user) {
	st.unindexInviter(m)
	m.inviterName, m.inviterID = u.name, u.id
	st.indexInviter(m)
}

func (st *state) indexInviter(m *member) {
	if m.inviterID == 0 {
		return
	}
	set := st.invitesBy[m.inviterID]
	if set == nil {
		set = map[*member]struct{}{}
		st.invitesBy[m.inviterID] = set
	}
	set[m] = struct{}{}
}

func (st *state) unindexInviter(m *member) {
	if set := st.invitesBy[m.inviterID]; set != nil {
		delete(set, m)
		if len(set) == 0 {
			delete(st.invitesBy, m.inviterID)
		}
	}
}

// pendingInvitesBy returns the pending invites the user userID sent, in id
// order (the order of the member list).
func (st *state) pendingInvitesBy(userID int64) []*member {
	var out []*member
	for o := range st.invitesBy[userID] {
		if o.pending() && st.members[o.id] == o {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (st *state) removeMember(m *member) {
	delete(st.members, m.id)
	i := sort.Search(len(st.memberOrder), func(i int) bool { return st.memberOrder[i].id >= m.id })
	if i < len(st.memberOrder) && st.memberOrder[i] == m {
		st.memberOrder = append(st.memberOrder[:i], st.memberOrder[i+1:]...)
	}
	if st.memberByEmail[lower(m.Email())] == m {
		delete(st.memberByEmail, lower(m.Email()))
	}
	if m.user != nil && st.memberByUser[m.user.id] == m {
		delete(st.memberByUser, m.user.id)
	}
	st.unindexInviter(m)
	for t := range m.teams {
		delete(t.members, m)
	}
	m.teams = map[*team]string{}
	st.scimOrder = nil
	m.invalidate()
}

func (st *state) addTeam(t *team) {
	st.teams[t.id] = t
	st.teamBySlug[t.slug] = t
	st.teamOrder = nil
}

func (st *state) sortedTeams() []*team {
	st.orderMu.Lock()
	defer st.orderMu.Unlock()
	if st.teamOrder == nil {
		st.teamOrder = make([]*team, 0, len(st.teams))
		for _, t := range st.teams {
			st.teamOrder = append(st.teamOrder, t)
		}
		sort.Slice(st.teamOrder, func(i, j int) bool { return st.teamOrder[i].slug < st.teamOrder[j].slug })
	}
	return st.teamOrder
}

func (st *state) sortedSCIM() []*member {
	st.orderMu.Lock()
	defer st.orderMu.Unlock()
	if st.scimOrder == nil {
		st.scimOrder = append(make([]*member, 0, len(st.memberOrder)), st.memberOrder...)
		// Sentry orders by the member row's own email column, then id
		// (src/sentry/core/endpoints/scim/members.py, order_by("email", "id")).
		// Only pending invites carry that email; an accepted member's is NULL,
		// and PostgreSQL sorts NULLs last: invites first (by email), then
		// members by id.
		sort.SliceStable(st.scimOrder, func(i, j int) bool {
			a, b := st.scimOrder[i], st.scimOrder[j]
			if a.pending() != b.pending() {
				return a.pending()
			}
			if a.pending() && a.email != b.email {
				return a.email < b.email
			}
			return a.id < b.id
		})
	}
	return st.scimOrder
}

// lookupMember resolves an id string; "me" is resolved by the caller.
func (st *state) memberByIDStr(s string) *member {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil
	}
	return st.members[id]
}

func (st *state) teamByIDOrSlug(s string) *team {
	if t := st.teamBySlug[s]; t != nil {
		return t
	}
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		return st.teams[id]
	}
	return nil
}

func (st *state) projectByIDOrSlug(s string) *project {
	if p := st.projectSlug[s]; p != nil {
		return p
	}
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		return st.projects[id]
	}
	return nil
}

// writeRoleCount counts approved members (with a user) whose role carries org:write.
func (st *state) isLastWriteMember(m *member) bool {
	if m.pending() || (m.role != "owner" && m.role != "manager") {
		return false
	}
	for _, o := range st.memberOrder {
		if o != m && !o.pending() && (o.role == "owner" || o.role == "manager") {
			return false
		}
	}
	return true
}

func (st *state) isOnlyOwner(m *member) bool {
	if m.pending() || m.role != "owner" {
		return false
	}
	for _, o := range st.memberOrder {
		if o != m && !o.pending() && o.role == "owner" {
			return false
		}
	}
	return true
}

func (st *state) addAudit(e *auditEntry) {
	e.id = int64(len(st.audit) + 1)
	st.audit = append(st.audit, e)
}

func (st *state) setMemberTeam(m *member, t *team, stored string) {
	if m.teams == nil {
		m.teams = map[*team]string{}
	}
	if _, on := m.teams[t]; !on {
		if m.joined == nil {
			m.joined = map[*team]int64{}
		}
		m.joined[t] = st.newID()
	}
	m.teams[t] = stored
	t.members[m] = struct{}{}
}

func (st *state) unsetMemberTeam(m *member, t *team) {
	delete(m.teams, t)
	delete(m.joined, t)
	delete(t.members, m)
}

func slugify(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
			dash = false
		case r == ' ' || r == '-':
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	return strings.Trim(b.String(), "-")
}
