package sentrytest

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	msgNoPermission = "You do not have permission to perform this action."
	msgNotFound     = "The requested resource does not exist"
	msgIdPMember    = "This user is managed through your organization's identity provider."
	msgIdPTeam      = "This team is managed through your organization's identity provider."
	msgMoreAccess   = "You cannot remove a member who has more access than you."
	msgLastOwnerMgr = "You cannot remove the only remaining owner or manager of the organization."
	msgLastOwner    = "You cannot remove the only remaining owner of the organization."
	msgPartnership  = "This member is managed by an active partnership and cannot be modified until the end of the partnership."
	msgInviteQuota  = "You are being rate limited for too many invitations."
)

// need checks that the caller has one of scopes; it writes 403 otherwise.
// Call with s.mu held and c.p resolved.
func (c *call) need(scopes ...string) bool {
	if c.p.hasAny(scopes...) {
		return true
	}
	c.detail(http.StatusForbidden, msgNoPermission)
	return false
}

func (c *call) lockW() *state {
	c.s.mu.Lock()
	c.p.resolve(c.s.st)
	return c.s.st
}

func (c *call) lockR() *state {
	c.s.mu.RLock()
	c.p.resolve(c.s.st)
	return c.s.st
}

func canManage(actorRole, targetRole string) bool {
	return rolePriority(actorRole) >= rolePriority(targetRole)
}

// targetMember resolves {member_id}, including "me".
func (c *call) targetMember(st *state) *member {
	id := c.r.PathValue("member_id")
	if id == "me" {
		return c.p.member
	}
	return st.memberByIDStr(id)
}

func (s *Sandbox) audit(st *state, p *principal, event, note string, target int64, targetUser int64, data map[string]any) {
	e := &auditEntry{event: event, ip: "127.0.0.1", note: note, targetObject: target, targetUserID: targetUser,
		data: data, dateCreated: s.now().UTC()}
	if p != nil {
		switch p.kind {
		case kindUser:
			e.actorUserID = p.user.id
		case kindIntegration:
			e.actorName = "SCIM Internal Integration (" + st.scimTag + ")"
		case kindOrgToken:
			e.actorName = p.token.name
		}
	}
	if data == nil {
		e.data = map[string]any{}
	}
	st.addAudit(e)
}

func userID(m *member) int64 {
	if m.user != nil {
		return m.user.id
	}
	return 0
}

// ---- GET /organizations/{org}/members/ ----

type memberFilter func(m *member) bool

// parseMemberQuery implements the members index "query" parameter. ok=false
// means an unknown key: the result is empty.
func (s *Sandbox) parseMemberQuery(st *state, q string) (cands []*member, filters []memberFilter, ok bool) {
	tokens := tokenizeQuery(q)
	var free []string
	indexed := false
	addCands := func(ms []*member) {
		if !indexed {
			cands, indexed = ms, true
			return
		}
		keep := map[*member]bool{}
		for _, m := range ms {
			keep[m] = true
		}
		out := cands[:0:0]
		for _, m := range cands {
			if keep[m] {
				out = append(out, m)
			}
		}
		cands = out
	}
	for _, t := range tokens {
		key, val, has := strings.Cut(t, ":")
		if !has {
			free = append(free, t)
			continue
		}
		vals := strings.Split(val, ",")
		switch key {
		case "email":
			var ms []*member
			seen := map[*member]bool{}
			for _, v := range vals {
				v = lower(v)
				for _, m := range []*member{st.memberByEmail[v], st.memberByUser[userIDOf(st.userByEmail[v])], st.memberByUser[userIDOf(st.userByAlt[v])]} {
					if m != nil && !seen[m] {
						seen[m] = true
						ms = append(ms, m)
					}
				}
			}
			addCands(ms)
		case "id":
			var ms []*member
			for _, v := range vals {
				if m := st.memberByIDStr(v); m != nil {
					ms = append(ms, m)
				}
			}
			addCands(ms)
		case "user.id":
			var ms []*member
			for _, v := range vals {
				id, err := strconv.ParseInt(v, 10, 64)
				if err == nil {
					if m := st.memberByUser[id]; m != nil {
						ms = append(ms, m)
					}
				}
			}
			addCands(ms)
		case "role":
			set := map[string]bool{}
			for _, v := range vals {
				set[v] = true
			}
			filters = append(filters, func(m *member) bool { return set[m.role] })
		case "scope":
			filters = append(filters, func(m *member) bool {
				r, _ := findOrgRole(m.role)
				for _, sc := range r.scopes {
					for _, v := range vals {
						if sc == v {
							return true
						}
					}
				}
				return false
			})
		case "isInvited":
			want := strings.EqualFold(val, "true")
			filters = append(filters, func(m *member) bool { return m.pending() == want })
		case "ssoLinked":
			want := strings.EqualFold(val, "true")
			filters = append(filters, func(m *member) bool { return m.flags["sso:linked"] == want })
		case "has2fa":
			want := strings.EqualFold(val, "true")
			filters = append(filters, func(m *member) bool { return (m.user != nil && m.user.has2fa) == want })
		case "hasExternalUsers":
			want := strings.EqualFold(val, "true")
			filters = append(filters, func(*member) bool { return !want })
		case "query":
			free = append(free, val)
		default:
			return nil, nil, false
		}
	}
	if len(free) > 0 {
		text := lower(strings.Join(free, " "))
		filters = append(filters, func(m *member) bool {
			if strings.Contains(lower(m.Email()), text) {
				return true
			}
			return m.user != nil && strings.Contains(lower(m.user.name), text)
		})
	}
	if indexed {
		sort.Slice(cands, func(i, j int) bool { return cands[i].id < cands[j].id })
	} else {
		cands = st.memberOrder
	}
	return cands, filters, true
}

func userIDOf(u *user) int64 {
	if u == nil {
		return -2
	}
	return u.id
}

// tokenizeQuery splits on whitespace, keeping double-quoted values together.
func tokenizeQuery(q string) []string {
	var out []string
	var b strings.Builder
	inQ := false
	for _, r := range q {
		switch {
		case r == '"':
			inQ = !inQ
		case (r == ' ' || r == '\t') && !inQ:
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

func (s *Sandbox) listMembers(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("member:read", "member:write", "member:admin") {
		return
	}
	pg, ok := c.offsetPage()
	if !ok {
		return
	}
	var items []*member
	if q := c.r.URL.Query().Get("query"); strings.TrimSpace(q) != "" {
		cands, filters, ok := s.parseMemberQuery(st, q)
		if ok {
			if len(filters) == 0 {
				items = cands
			} else {
				for _, m := range cands {
					keep := true
					for _, f := range filters {
						if !f(m) {
							keep = false
							break
						}
					}
					if keep {
						items = append(items, m)
					}
				}
			}
		}
	} else {
		items = st.memberOrder
	}
	lo, hi, more := pg.window(len(items))
	var buf bytes.Buffer
	buf.Grow((hi - lo) * 1100)
	buf.WriteByte('[')
	for i, m := range items[lo:hi] {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(s.memberListJSON(st, m))
	}
	buf.WriteByte(']')
	c.setOffsetLink(pg, more)
	writeRaw(c.w, http.StatusOK, buf.Bytes())
}

func (s *Sandbox) getMember(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("member:read", "member:write", "member:admin") {
		return
	}
	m := c.targetMember(st)
	if m == nil {
		c.detail(http.StatusNotFound, msgNotFound)
		return
	}
	c.json(http.StatusOK, s.wireMemberDetail(st, m, c.p))
}

// ---- DELETE /organizations/{org}/members/{member_id}/ ----

func (s *Sandbox) deleteMember(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("member:read", "member:write", "member:admin") {
		return
	}
	m := c.targetMember(st)
	if m == nil {
		c.detail(http.StatusNotFound, msgNotFound)
		return
	}
	if m != c.p.member {
		if !c.p.has("member:admin") {
			c.detail(http.StatusBadRequest, "You are missing the member:admin scope.")
			return
		}
		if c.p.member != nil {
			if !canManage(c.p.member.role, m.role) {
				c.detail(http.StatusBadRequest, msgMoreAccess)
				return
			}
		} else if m.role == "owner" {
			c.detail(http.StatusBadRequest, msgMoreAccess)
			return
		}
	}
	if st.isLastWriteMember(m) {
		c.detail(http.StatusForbidden, msgLastOwnerMgr)
		return
	}
	if m.flags[flagIdPProvisioned] {
		c.detail(http.StatusForbidden, msgIdPMember)
		return
	}
	if m.flags[flagPartnership] {
		c.detail(http.StatusForbidden, msgPartnership)
		return
	}
	s.removeMember(st, c.p, m)
	writeEmpty(c.w, http.StatusNoContent)
}

// removeMember deletes m (REST or SCIM), its pending invites sent by m's user,
// writes the audit entry and counts the mutation. Call with s.mu held.
func (s *Sandbox) removeMember(st *state, p *principal, m *member) {
	email := m.Email()
	s.audit(st, p, "member.remove", "removed member "+email, m.id, userID(m), map[string]any{"email": email, "role": m.role})
	st.removeMember(m)
	if m.user != nil {
		for _, o := range append([]*member(nil), st.memberOrder...) {
			if o.pending() && o.inviterID == m.user.id {
				st.removeMember(o)
			}
		}
	}
	s.stats.mutation("member.remove", email)
}

// ---- POST /organizations/{org}/members/ (invite) ----

type inviteBody struct {
	Email      string          `json:"email"`
	OrgRole    string          `json:"orgRole"`
	Role       string          `json:"role"`
	TeamRoles  []teamRoleInput `json:"teamRoles"`
	Teams      []string        `json:"teams"`
	SendInvite *bool           `json:"sendInvite"`
	Reinvite   bool            `json:"reinvite"`
}

type teamRoleInput struct {
	TeamSlug string  `json:"teamSlug"`
	Role     *string `json:"role"`
}

// inviteQuota applies Sentry's invite rate limits; it returns false (and the
// caller answers 429) when a quota is exhausted.
func (s *Sandbox) inviteQuota(email string) bool {
	if s.opts.DisableInviteQuota {
		return true
	}
	day := s.now().Unix() / 86400
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	if day != s.quotaDay {
		s.quotaDay, s.quotaOrg, s.quotaTo = day, 0, map[string]int{}
	}
	s.quotaOrg++
	s.quotaTo[lower(email)]++
	return s.quotaOrg <= 100 && s.quotaTo[lower(email)] <= 10
}

func (s *Sandbox) inviteMember(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("member:write", "member:admin", "member:invite") {
		return
	}
	var b inviteBody
	if !c.decode(&b) {
		return
	}
	email := strings.TrimSpace(b.Email)
	if email == "" || !strings.Contains(email, "@") || len(email) > 75 {
		c.json(http.StatusBadRequest, map[string][]string{"email": {"Enter a valid email address."}})
		return
	}
	role := b.OrgRole
	if role == "" {
		role = b.Role
	}
	if role == "" {
		role = "member"
	}
	if rolePriority(role) < 0 {
		c.json(http.StatusBadRequest, map[string][]string{"orgRole": {fmt.Sprintf("\"%s\" is not a valid choice.", role)}})
		return
	}
	if c.p.member != nil && rolePriority(role) > rolePriority(c.p.member.role) {
		c.json(http.StatusBadRequest, map[string][]string{"orgRole": {"You do not have permission to set that org-level role"}})
		return
	}
	if c.p.kind != kindUser && role != "member" {
		c.json(http.StatusBadRequest, map[string][]string{"orgRole": {"Integration tokens are restricted to inviting new members with the member role only."}})
		return
	}
	if role == "admin" {
		c.json(http.StatusBadRequest, map[string][]string{"orgRole": {"The role 'admin' is deprecated and may no longer be assigned."}})
		return
	}
	if ex := st.memberByEmail[lower(email)]; ex != nil {
		if !ex.pending() {
			c.json(http.StatusBadRequest, map[string][]string{"email": {fmt.Sprintf("The user %s is already a member", email)}})
			return
		}
		if !b.Reinvite {
			c.json(http.StatusBadRequest, map[string][]string{"email": {fmt.Sprintf("The user %s has already been invited", email)}})
			return
		}
	}
	if u := st.userByEmail[lower(email)]; u != nil && st.memberByUser[u.id] != nil {
		c.json(http.StatusBadRequest, map[string][]string{"email": {fmt.Sprintf("The user %s is already a member", email)}})
		return
	}
	teams, ok := c.resolveTeamRoles(st, b.TeamRoles, b.Teams, role)
	if !ok {
		return
	}
	if !s.inviteQuota(email) {
		c.detail(http.StatusTooManyRequests, msgInviteQuota)
		return
	}
	now := s.now().UTC()
	if ex := st.memberByEmail[lower(email)]; ex != nil {
		// reinvite: refresh the token and expiry.
		ex.inviteExpiry = now.Add(30 * 24 * time.Hour)
		ex.inviteToken = fmt.Sprintf("%032x", now.UnixNano())
		s.audit(st, c.p, "member.reinvite", "resent invite to "+ex.Email(), ex.id, 0, map[string]any{"email": ex.Email()})
		s.stats.mutation("member.reinvite", ex.Email())
		c.json(http.StatusCreated, s.wireMember(st, ex))
		return
	}
	m := s.createInvite(st, c.p, email, role, nil)
	for _, tr := range teams {
		st.setMemberTeam(m, tr.t, tr.role)
	}
	c.json(http.StatusCreated, s.wireMember(st, m))
}

func (s *Sandbox) createInvite(st *state, p *principal, email, role string, flags map[string]bool) *member {
	now := s.now().UTC()
	m := &member{id: st.newID(), email: email, role: role, flags: map[string]bool{}, teams: map[*team]string{},
		dateCreated: now, inviteExpiry: now.Add(30 * 24 * time.Hour)}
	m.inviteToken = fmt.Sprintf("%032x", m.id*7919+now.UnixNano())
	for k, v := range flags {
		m.flags[k] = v
	}
	if p != nil && p.kind == kindUser && p.member != nil {
		m.inviterName = p.user.name
		m.inviterID = p.user.id
	}
	st.addMember(m)
	s.audit(st, p, "member.invite", "invited member "+email, m.id, 0, map[string]any{"email": email, "role": role})
	s.stats.mutation("member.invite", email)
	return m
}

type teamAssign struct {
	t    *team
	role string // stored (normalized)
}

// resolveTeamRoles validates teamRoles/teams for an org role.
func (c *call) resolveTeamRoles(st *state, trs []teamRoleInput, slugs []string, orgRoleID string) ([]teamAssign, bool) {
	var out []teamAssign
	seen := map[*team]bool{}
	add := func(slug string, role string) bool {
		t := st.teamBySlug[slug]
		if t == nil {
			c.json(http.StatusBadRequest, map[string][]string{"teamRoles": {"Invalid team: " + slug}})
			return false
		}
		if role != "" && teamRolePriority(role) < 0 {
			c.json(http.StatusBadRequest, map[string][]string{"teamRoles": {"Invalid team-role: " + role}})
			return false
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, teamAssign{t: t, role: normalizeTeamRole(orgRoleID, role)})
		}
		return true
	}
	for _, tr := range trs {
		role := ""
		if tr.Role != nil {
			role = *tr.Role
		}
		if !add(tr.TeamSlug, role) {
			return nil, false
		}
	}
	for _, slug := range slugs {
		if !add(slug, "") {
			return nil, false
		}
	}
	if len(out) > 0 && orgRoleID == "billing" {
		c.detail(http.StatusBadRequest, "The user with a 'billing' role cannot have team-level permissions.")
		return nil, false
	}
	return out, true
}

// ---- PUT /organizations/{org}/members/{member_id}/ ----

type memberPutBody struct {
	OrgRole   string           `json:"orgRole"`
	Role      string           `json:"role"`
	TeamRoles *[]teamRoleInput `json:"teamRoles"`
	Teams     *[]string        `json:"teams"`
	Reinvite  bool             `json:"reinvite"`
}

func (s *Sandbox) putMember(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("member:invite", "member:write", "member:admin") {
		return
	}
	m := c.targetMember(st)
	if m == nil {
		c.detail(http.StatusNotFound, msgNotFound)
		return
	}
	if c.p.kind != kindUser || c.p.member == nil {
		writeEmpty(c.w, http.StatusBadRequest) // Sentry: Response(status=400) without a user
		return
	}
	var b memberPutBody
	if !c.decode(&b) {
		return
	}
	if m.flags[flagPartnership] {
		c.detail(http.StatusForbidden, msgPartnership)
		return
	}
	caller := c.p.member
	newRole := b.OrgRole
	if newRole == "" {
		newRole = b.Role
	}
	roleChange := newRole != "" && newRole != m.role
	if newRole != "" {
		if rolePriority(newRole) < 0 {
			c.json(http.StatusBadRequest, map[string][]string{"orgRole": {fmt.Sprintf("\"%s\" is not a valid choice.", newRole)}})
			return
		}
		if roleChange && m == caller {
			c.detail(http.StatusBadRequest, "You cannot make changes to your own role.")
			return
		}
		if roleChange {
			if !c.p.has("member:admin") && !c.p.has("member:write") {
				c.json(http.StatusForbidden, map[string]string{"role": "You do not have permission to assign the given role."})
				return
			}
			if !canManage(caller.role, m.role) {
				c.json(http.StatusForbidden, map[string]string{"role": "You do not have permission to assign a role to the given user."})
				return
			}
			if rolePriority(newRole) > rolePriority(caller.role) {
				c.json(http.StatusForbidden, map[string]string{"role": "You do not have permission to assign the given role."})
				return
			}
			if newRole == "admin" {
				c.detail(http.StatusBadRequest, "The role 'admin' is deprecated and may no longer be assigned.")
				return
			}
			if m.flags[flagIdPRoleRestrict] {
				c.json(http.StatusForbidden, map[string]string{"role": "This user's org-role is managed through your organization's identity provider."})
				return
			}
			if st.isLastWriteMember(m) && newRole != "owner" && newRole != "manager" {
				c.detail(http.StatusForbidden, msgLastOwnerMgr)
				return
			}
		}
	}
	effRole := m.role
	if newRole != "" {
		effRole = newRole
	}
	var trs []teamRoleInput
	var slugs []string
	if b.TeamRoles != nil {
		trs = *b.TeamRoles
	} else if b.Teams != nil {
		slugs = *b.Teams
	}
	// Sentry replaces the whole team set on every PUT (see doc.go).
	assign, ok := c.resolveTeamRoles(st, trs, slugs, effRole)
	if !ok {
		return
	}
	if effRole != m.role {
		m.role = effRole
		for t, r := range m.teams {
			m.teams[t] = normalizeTeamRole(effRole, r)
		}
		s.stats.mutation("member.edit", m.Email())
	}
	// The reinvite happens once the request is known to be valid (a 400 or
	// 403 above changes nothing).
	if b.Reinvite && m.pending() {
		m.inviteExpiry = s.now().UTC().Add(30 * 24 * time.Hour)
		s.audit(st, c.p, "member.reinvite", "resent invite to "+m.Email(), m.id, 0, nil)
		s.stats.mutation("member.reinvite", m.Email())
	}
	s.replaceTeams(st, c.p, m, assign)
	m.invalidate()
	s.audit(st, c.p, "member.edit", "edited member "+m.Email(), m.id, userID(m), map[string]any{"email": m.Email(), "role": m.role})
	c.json(http.StatusOK, s.wireMemberDetail(st, m, c.p))
}

// replaceTeams makes m's team set exactly assign. Call with s.mu held.
func (s *Sandbox) replaceTeams(st *state, p *principal, m *member, assign []teamAssign) {
	want := map[*team]string{}
	for _, a := range assign {
		want[a.t] = a.role
	}
	for _, t := range sortedTeamsOf(m) {
		if _, ok := want[t]; !ok {
			st.unsetMemberTeam(m, t)
			s.audit(st, p, "member.leave-team", m.Email()+" left team "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
			s.stats.mutation("member.leave-team", m.Email())
		}
	}
	for _, a := range assign {
		old, had := m.teams[a.t]
		switch {
		case !had:
			st.setMemberTeam(m, a.t, a.role)
			s.audit(st, p, "member.join-team", m.Email()+" joined team "+a.t.slug, m.id, userID(m), map[string]any{"team_slug": a.t.slug})
			s.stats.mutation("member.join-team", m.Email())
		case old != a.role:
			st.setMemberTeam(m, a.t, a.role)
			s.stats.mutation("member.team-role", m.Email())
		}
	}
}

// ---- member ↔ team ----

func (s *Sandbox) memberTeamTarget(c *call, st *state) (*member, *team, bool) {
	m := c.targetMember(st)
	t := st.teamByIDOrSlug(c.r.PathValue("team_id_or_slug"))
	if m == nil || t == nil {
		c.detail(http.StatusNotFound, msgNotFound)
		return nil, nil, false
	}
	return m, t, true
}

// canAdminTeam: org:write or org-level team:write (team:admin for removals),
// or team admin of t.
func (c *call) canAdminTeam(t *team) bool {
	if c.p.has("org:write") || c.p.has("org:admin") || c.p.has("team:write") || c.p.has("team:admin") {
		return true
	}
	if cm := c.p.member; cm != nil {
		if r, ok := cm.teams[t]; ok && effectiveTeamRole(cm.role, r) == "admin" {
			return true
		}
	}
	return false
}

func (s *Sandbox) addMemberTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if c.p.kind == kindOrgToken {
		// Sentry needs a user or an integration here; org auth tokens are not authenticated for it.
		c.detail(http.StatusUnauthorized, "Authentication credentials were not provided.")
		return
	}
	if !c.need("org:read", "org:write", "org:admin", "team:write") {
		return
	}
	m, t, ok := s.memberTeamTarget(c, st)
	if !ok {
		return
	}
	if _, already := m.teams[t]; already {
		writeEmpty(c.w, http.StatusNoContent)
		return
	}
	if t.idp {
		c.detail(http.StatusForbidden, msgIdPTeam)
		return
	}
	if m.role == "billing" {
		c.detail(http.StatusForbidden, "The user with a 'billing' role cannot have team-level permissions.")
		return
	}
	if !st.openMembership && !c.canAdminTeam(t) {
		// Sentry creates an access request instead of a membership.
		s.audit(st, c.p, "member.pending", m.Email()+" requested to join "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
		writeEmpty(c.w, http.StatusAccepted)
		return
	}
	st.setMemberTeam(m, t, "")
	s.audit(st, c.p, "member.join-team", m.Email()+" joined team "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
	s.stats.mutation("member.join-team", m.Email())
	c.json(http.StatusCreated, s.wireTeam(st, t, c.p, false))
}

func (s *Sandbox) removeMemberTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("org:read", "org:write", "org:admin", "member:read", "member:write", "member:admin") {
		return
	}
	m, t, ok := s.memberTeamTarget(c, st)
	if !ok {
		return
	}
	if t.idp {
		c.detail(http.StatusForbidden, msgIdPTeam)
		return
	}
	if m != c.p.member && !c.canAdminTeam(t) {
		c.detail(http.StatusBadRequest, "You do not have permission to edit that user's membership.")
		return
	}
	if _, had := m.teams[t]; had {
		st.unsetMemberTeam(m, t)
		s.audit(st, c.p, "member.leave-team", m.Email()+" left team "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
		s.stats.mutation("member.leave-team", m.Email())
	}
	c.json(http.StatusOK, s.wireTeam(st, t, c.p, false))
}

func (s *Sandbox) putMemberTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("org:read", "org:write", "org:admin", "member:read", "member:write", "member:admin") {
		return
	}
	m, t, ok := s.memberTeamTarget(c, st)
	if !ok {
		return
	}
	old, on := m.teams[t]
	if !on {
		c.detail(http.StatusNotFound, msgNotFound)
		return
	}
	var b struct {
		TeamRole string `json:"teamRole"`
	}
	if !c.decode(&b) {
		return
	}
	if teamRolePriority(b.TeamRole) < 0 {
		c.json(http.StatusBadRequest, map[string][]string{"teamRole": {fmt.Sprintf("\"%s\" is not a valid choice.", b.TeamRole)}})
		return
	}
	if !c.canAdminTeam(t) {
		c.detail(http.StatusBadRequest, "You do not have permission to edit that user's membership.")
		return
	}
	if m.role == "billing" {
		c.detail(http.StatusBadRequest, "The user with a 'billing' role cannot have team-level permissions.")
		return
	}
	stored := normalizeTeamRole(m.role, b.TeamRole)
	if stored != old {
		st.setMemberTeam(m, t, stored)
		s.stats.mutation("member.team-role", m.Email())
		s.audit(st, c.p, "member.edit", "changed team role of "+m.Email()+" on "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug, "teamRole": b.TeamRole})
	}
	c.json(http.StatusOK, map[string]any{"isActive": true, "teamRole": nullable(stored)})
}

// ---- sandbox helpers: views ----

// MemberView is a read-only snapshot of a member or pending invite.
type MemberView struct {
	ID      string
	Email   string
	OrgRole string
	UserID  string // "" for pending invites
	Pending bool
	Flags   map[string]bool
	Teams   map[string]string // team slug → stored team role ("" = null)
}

func viewOf(m *member) MemberView {
	v := MemberView{ID: m.idStr(), Email: m.Email(), OrgRole: m.role, Pending: m.pending(),
		Flags: map[string]bool{}, Teams: map[string]string{}}
	if m.user != nil {
		v.UserID = strconv.FormatInt(m.user.id, 10)
	}
	for k, on := range m.flags {
		if on {
			v.Flags[k] = true
		}
	}
	for t, r := range m.teams {
		v.Teams[t.slug] = r
	}
	return v
}

// Member looks up a current member or pending invite by email (case-insensitive).
func (s *Sandbox) Member(email string) (MemberView, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.st.memberByEmail[lower(email)]
	if m == nil {
		return MemberView{}, false
	}
	return viewOf(m), true
}

// Members returns every member and pending invite ordered by id.
func (s *Sandbox) Members() []MemberView {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]MemberView, 0, len(s.st.memberOrder))
	for _, m := range s.st.memberOrder {
		out = append(out, viewOf(m))
	}
	return out
}

// acceptInvite turns a pending invite into a member with a user.
func (s *Sandbox) acceptInvite(memberID string) (MemberView, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	m := st.memberByIDStr(memberID)
	if m == nil {
		return MemberView{}, http.StatusNotFound, msgNotFound
	}
	if !m.pending() {
		return MemberView{}, http.StatusBadRequest, "member is not a pending invite"
	}
	now := s.now().UTC()
	u := st.userByEmail[lower(m.email)]
	if u == nil {
		u = &user{id: st.newID(), name: nameFromEmail(m.email), email: m.email, dateJoined: now}
		u.emails = []userEmail{{id: st.newID(), email: m.email, verified: true}}
		st.addUser(u)
	} else if st.memberByUser[u.id] != nil {
		return MemberView{}, http.StatusConflict, "user is already a member"
	}
	m.user = u
	m.inviteToken = ""
	for t, r := range m.teams {
		m.teams[t] = normalizeTeamRole(m.role, r)
	}
	st.memberByUser[u.id] = m
	st.memberByEmail[lower(m.Email())] = m
	st.scimOrder = nil
	m.invalidate()
	st.addAudit(&auditEntry{actorUserID: u.id, event: "member.accept-invite", ip: "127.0.0.1",
		note: "accepted the membership invite", targetObject: m.id, targetUserID: u.id,
		data: map[string]any{"email": m.email}, dateCreated: now})
	s.stats.mutation("member.accept-invite", m.email)
	return viewOf(m), http.StatusOK, ""
}

// AcceptInvite accepts the pending invite of email as the invited user would.
func (s *Sandbox) AcceptInvite(email string) (MemberView, error) {
	v, ok := s.Member(email)
	if !ok {
		return MemberView{}, fmt.Errorf("sentrytest: no member or invite %q", email)
	}
	out, status, msg := s.acceptInvite(v.ID)
	if status != http.StatusOK {
		return MemberView{}, fmt.Errorf("sentrytest: accept invite %q: %s", email, msg)
	}
	return out, nil
}
