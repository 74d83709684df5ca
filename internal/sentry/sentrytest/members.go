package sentrytest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"regexp"
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
	note := "removed member " + email
	if p != nil && p.user != nil && m.user == p.user {
		note = "left the organization"
	}
	s.audit(st, p, "member.remove", note, m.id, userID(m), auditDataOf(m))
	st.removeMember(m)
	if m.user != nil {
		for _, o := range st.pendingInvitesBy(m.user.id) {
			st.removeMember(o)
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
	role := b.OrgRole
	if role == "" {
		role = b.Role
	}
	if role == "" {
		role = "member"
	}
	if c.p.kind != kindUser && role != "member" {
		// raised outside the serializer: DRF renders a bare list.
		c.json(http.StatusBadRequest, []string{"Integration tokens are restricted to inviting new members with the member role only."})
		return
	}
	// The request serializer validates every field and reports them together.
	errs := map[string][]string{}
	email := b.Email
	if msg := validateInviteEmail(email); msg != "" {
		errs["email"] = []string{msg}
	} else if ex := st.memberByEmail[lower(email)]; ex != nil && ex.pending() {
		// Sentry refuses any approved pending invite, whatever "reinvite" says;
		// only a PUT re-sends.
		errs["email"] = []string{fmt.Sprintf("The user %s has already been invited", email)}
	} else if ex != nil || (st.userByEmail[lower(email)] != nil && st.memberByUser[st.userByEmail[lower(email)].id] != nil) ||
		(st.userByAlt[lower(email)] != nil && st.memberByUser[st.userByAlt[lower(email)].id] != nil) {
		errs["email"] = []string{fmt.Sprintf("The user %s is already a member", email)}
	}
	for field, v := range map[string]string{"orgRole": b.OrgRole, "role": b.Role} {
		if v == "" {
			continue
		}
		if msg := c.validateAllowedRole(v, true); msg != "" {
			errs[field] = []string{msg}
		}
	}
	teams, terrs := resolveTeams(st, b.TeamRoles, b.Teams)
	for k, v := range terrs {
		errs[k] = v
	}
	if len(errs) > 0 {
		c.json(http.StatusBadRequest, errs)
		return
	}
	if !s.inviteQuota(email) {
		c.detail(http.StatusTooManyRequests, msgInviteQuota)
		return
	}
	if len(teams) > 0 && role == "billing" {
		c.json(http.StatusBadRequest, map[string]string{"email": "The user with a 'billing' role cannot have team-level permissions."})
		return
	}
	m := s.createInvite(st, c.p, email, role, nil)
	// "Do not set team-roles when inviting": the memberships are stored with a
	// null role whatever teamRoles said.
	for _, tr := range teams {
		st.setMemberTeam(m, tr.t, "")
	}
	// organization_member_index.py writes member.invite after the team
	// assignments: its data (get_audit_log_data) lists the teams.
	if n := len(st.audit); n > 0 && st.audit[n-1].event == "member.invite" && st.audit[n-1].targetObject == m.id {
		st.audit[n-1].data = auditDataOf(m)
	}
	c.json(http.StatusCreated, s.wireMember(st, m))
}

// allowedRoleFor is OrganizationMember.get_allowed_org_roles_to_invite
// (src/sentry/models/organizationmember.py): every role whose priority is at
// most the caller's. Priority is the position in the role list (RoleManager);
// open-source SENTRY_ROLES (src/sentry/conf/server.py) has member, admin,
// manager, owner, and sentry.io adds billing ahead of member (lowest), so a
// manager may assign billing, member and manager, never owner.
func allowedRoleFor(callerRole, role string) bool {
	return rolePriority(role) >= 0 && rolePriority(role) <= rolePriority(callerRole)
}

// validateAllowedRole is the request serializer's orgRole/role check: a known
// choice the caller may assign (for invites, the retired admin is refused).
func (c *call) validateAllowedRole(role string, invite bool) string {
	if rolePriority(role) < 0 {
		return fmt.Sprintf("\"%s\" is not a valid choice.", role)
	}
	if c.p.kind != kindUser {
		if role != "member" {
			return "You do not have permission to set that org-level role"
		}
		return ""
	}
	if c.p.member == nil || (!invite && !c.p.has("member:admin")) || !allowedRoleFor(c.p.member.role, role) {
		return "You do not have permission to set that org-level role"
	}
	if invite && role == "admin" {
		return "The role 'admin' is deprecated and may no longer be assigned."
	}
	return ""
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
	st.addMember(m) // indexes the inviter
	s.audit(st, p, "member.invite", "invited member "+email, m.id, 0, auditDataOf(m))
	s.stats.mutation("member.invite", email)
	return m
}

type teamAssign struct {
	t    *team
	role string // stored (normalized)
}

// resolveTeams validates teamRoles and teams as the request serializer does:
// unknown roles are "Invalid team-role", unknown slugs "Invalid teams". When
// teamRoles is non-empty it wins over teams. Roles are kept as given.
func resolveTeams(st *state, trs []teamRoleInput, slugs []string) ([]teamAssign, map[string][]string) {
	errs := map[string][]string{}
	var out []teamAssign
	seen := map[*team]bool{}
	if len(trs) > 0 {
		for _, tr := range trs {
			if tr.Role != nil && teamRolePriority(*tr.Role) < 0 {
				errs["teamRoles"] = []string{"Invalid team-role"}
				return nil, errs
			}
		}
		for _, tr := range trs {
			if st.teamBySlug[tr.TeamSlug] == nil {
				errs["teamRoles"] = []string{"Invalid teams"}
				return nil, errs
			}
		}
		roles := map[string]string{}
		for _, tr := range trs {
			roles[tr.TeamSlug] = ""
			if tr.Role != nil {
				roles[tr.TeamSlug] = *tr.Role
			}
		}
		for _, tr := range trs {
			t := st.teamBySlug[tr.TeamSlug]
			if !seen[t] {
				seen[t] = true
				out = append(out, teamAssign{t: t, role: roles[tr.TeamSlug]})
			}
		}
		return out, nil
	}
	for _, slug := range slugs {
		t := st.teamBySlug[slug]
		if t == nil {
			errs["teams"] = []string{"Invalid teams"}
			return nil, errs
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, teamAssign{t: t})
		}
	}
	return out, nil
}

// ---- PUT /organizations/{org}/members/{member_id}/ ----

type memberPutBody struct {
	OrgRole    *string          `json:"orgRole"`
	Role       *string          `json:"role"`
	TeamRoles  *[]teamRoleInput `json:"teamRoles"`
	Teams      *[]string        `json:"teams"`
	Reinvite   *bool            `json:"reinvite"`
	Regenerate *bool            `json:"regenerate"`
	Email      *string          `json:"email"`
	SendInvite *bool            `json:"sendInvite"`
}

const (
	msgEditWhenReinviting = "You cannot modify member details when resending an invitation. Separate requests are required."
	msgExpiredInvite      = "You cannot resend an expired invitation without regenerating the token."
	msgUninvitable        = "You cannot send an invitation to a user who is already a full member."
	msgMissingAdmin       = "You are missing the member:admin scope."
	msgMemberInvite       = "You cannot modify invitations sent by someone else."
)

// putMember follows Sentry's member PUT step by step. It is not
// transactional: the team set is saved before the org-role checks, so a role
// change refused with 403 or 400 still leaves the team changes of the same
// request in place. It does not enforce the idp:role-restricted lock (Sentry's
// check is commented out pending SCIM fixes).
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
	// The request serializer (partial): every present field is validated.
	errs := map[string][]string{}
	if b.Email != nil {
		if msg := validateInviteEmail(*b.Email); msg != "" {
			errs["email"] = []string{msg}
		}
	}
	if b.OrgRole != nil {
		if msg := c.validateAllowedRole(*b.OrgRole, false); msg != "" {
			errs["orgRole"] = []string{msg}
		}
	}
	if b.Role != nil {
		if msg := c.validateAllowedRole(*b.Role, false); msg != "" {
			errs["role"] = []string{msg}
		}
	}
	var trs []teamRoleInput
	var slugs []string
	if b.TeamRoles != nil {
		trs = *b.TeamRoles
	}
	if b.Teams != nil {
		slugs = *b.Teams
	}
	assign, terrs := resolveTeams(st, trs, slugs)
	for k, v := range terrs {
		errs[k] = v
	}
	if len(errs) > 0 {
		c.json(http.StatusBadRequest, errs)
		return
	}
	if m.flags[flagPartnership] {
		c.detail(http.StatusForbidden, msgPartnership)
		return
	}
	caller := c.p.member
	if !c.p.has("member:admin") && c.p.has("member:invite") {
		reinviteOnly := b.OrgRole == nil && b.Role == nil && b.TeamRoles == nil && b.Teams == nil && b.Email == nil && b.SendInvite == nil
		if !(m.pending() && reinviteOnly) {
			c.detail(http.StatusForbidden, msgNoPermission)
			return
		}
		if m.inviterID != caller.user.id {
			c.detail(http.StatusForbidden, msgMemberInvite)
			return
		}
	}
	if b.Reinvite != nil && *b.Reinvite {
		s.reinvitePut(c, st, m, b)
		return
	}
	newRole := ""
	if b.OrgRole != nil && *b.OrgRole != "" {
		newRole = *b.OrgRole
	} else if b.Role != nil && *b.Role != "" {
		newRole = *b.Role
	}
	// Team roles are saved first ("if the org-role has elevated permissions on
	// the teams, the team-roles can be overwritten later").
	if len(assign) > 0 || (b.TeamRoles == nil && b.Teams == nil && len(m.teams) > 0) {
		r := m.role
		if newRole != "" {
			r = newRole
		}
		if r == "billing" {
			c.detail(http.StatusBadRequest, fmt.Sprintf("The user with a '%s' role cannot have team-level permissions.", r))
			return
		}
	}
	s.replaceTeams(st, c.p, m, assign)
	m.invalidate()
	if newRole != "" && newRole != m.role {
		if !allowedRoleFor(caller.role, newRole) || !c.p.has("member:admin") {
			c.json(http.StatusForbidden, map[string]string{"role": "You do not have permission to assign the given role."})
			return
		}
		if !allowedRoleFor(caller.role, m.role) {
			c.json(http.StatusForbidden, map[string]string{"role": "You do not have permission to assign a role to the given user."})
			return
		}
		if m == caller {
			c.detail(http.StatusBadRequest, "You cannot make changes to your own role.")
			return
		}
		if newRole == "admin" {
			c.detail(http.StatusBadRequest, "The role 'admin' is deprecated and may no longer be assigned.")
			return
		}
		// Sentry's _change_org_role means to null team roles at or below the new
		// minimum team role, but never saves them: stored team roles survive.
		m.role = newRole
		m.invalidate()
		s.stats.mutation("member.edit", m.Email())
	}
	s.audit(st, c.p, "member.edit", memberEditNote(m), m.id, userID(m), auditDataOf(m))
	c.json(http.StatusOK, s.wireMemberDetail(st, m, c.p))
}

// reinvitePut is the reinvite branch of the member PUT.
func (s *Sandbox) reinvitePut(c *call, st *state, m *member, b memberPutBody) {
	if b.OrgRole != nil || b.Role != nil || b.TeamRoles != nil || b.Teams != nil || b.Email != nil || b.SendInvite != nil {
		c.detail(http.StatusForbidden, msgEditWhenReinviting)
		return
	}
	if !m.pending() {
		if st.samlEnabled && !m.flags["sso:linked"] {
			// Sentry e-mails an SSO link instead.
			s.audit(st, c.p, "member.reinvite", "resent SSO link to "+m.Email(), m.id, userID(m), auditDataOf(m))
			c.json(http.StatusOK, s.wireMemberDetail(st, m, c.p))
			return
		}
		c.detail(http.StatusBadRequest, msgUninvitable)
		return
	}
	if !s.inviteQuota(m.Email()) {
		c.detail(http.StatusTooManyRequests, msgInviteQuota)
		return
	}
	now := s.now().UTC()
	if b.Regenerate != nil && *b.Regenerate {
		if !c.p.has("member:admin") {
			c.detail(http.StatusBadRequest, msgMissingAdmin)
			return
		}
		m.inviteToken = fmt.Sprintf("%032x", m.id*7919+now.UnixNano())
		m.inviteExpiry = now.Add(30 * 24 * time.Hour)
	}
	if !m.inviteExpiry.IsZero() && now.After(m.inviteExpiry) {
		c.detail(http.StatusBadRequest, msgExpiredInvite)
		return
	}
	s.audit(st, c.p, "member.reinvite", "resent invite to "+m.Email(), m.id, 0, auditDataOf(m))
	s.stats.mutation("member.reinvite", m.Email())
	c.json(http.StatusOK, s.wireMemberDetail(st, m, c.p))
}

// auditDataOf mirrors OrganizationMember.get_audit_log_data.
// memberEditNote renders member.edit as MemberEditAuditLogEvent does: it
// looks for "team_slugs" while the data has "teams_slugs", so teams is N/A.
func memberEditNote(m *member) string {
	return "edited member " + m.Email() + " (role: " + m.role + ", teams: N/A)"
}

// auditDataOf is OrganizationMember.get_audit_log_data
// (src/sentry/models/organizationmember.py).
func auditDataOf(m *member) map[string]any {
	ids := []int64{}
	slugs := []string{}
	for _, t := range sortedTeamsOf(m) {
		ids = append(ids, t.id)
		slugs = append(slugs, t.slug)
	}
	var uid any
	if m.user != nil {
		uid = m.user.id
	}
	return map[string]any{"email": m.Email(), "user": uid, "teams": ids, "teams_slugs": slugs,
		"has_global_access": m.role == "manager" || m.role == "owner", "role": m.role, "invite_status": "approved"}
}

// replaceTeams makes m's team set exactly assign, as Sentry's
// save_team_assignments does: every membership row is deleted and recreated
// (so the join order of all of them is renewed) with the role given (null
// for "teams"). Call with s.mu held.
func (s *Sandbox) replaceTeams(st *state, p *principal, m *member, assign []teamAssign) {
	want := map[*team]string{}
	for _, a := range assign {
		want[a.t] = a.role
	}
	old := map[*team]string{}
	for t, r := range m.teams {
		old[t] = r
	}
	for _, t := range sortedTeamsOf(m) {
		st.unsetMemberTeam(m, t)
		if _, ok := want[t]; !ok {
			s.audit(st, p, "member.leave-team", leaveTeamNote(p, m, t.slug), m.id, userID(m), map[string]any{"email": m.Email(), "team_slug": t.slug})
			s.stats.mutation("member.leave-team", m.Email())
		}
	}
	for _, a := range assign {
		if _, done := m.teams[a.t]; done {
			continue
		}
		st.setMemberTeam(m, a.t, a.role)
		r, had := old[a.t]
		switch {
		case !had:
			s.audit(st, p, "member.join-team", joinTeamNote(p, m, a.t.slug), m.id, userID(m), map[string]any{"email": m.Email(), "team_slug": a.t.slug})
			s.stats.mutation("member.join-team", m.Email())
		case r != a.role:
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

func (s *Sandbox) addMemberTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if c.p.kind == kindOrgToken {
		// Sentry needs a user or an integration here; org auth tokens are not authenticated for it.
		c.detail(http.StatusUnauthorized, "Authentication credentials were not provided.")
		return
	}
	if !c.need("org:read", "org:write", "team:write") {
		return
	}
	m, t, ok := s.memberTeamTarget(c, st)
	if !ok {
		return
	}
	// Order as in Sentry's post(): the role check, then "already on it", then IdP.
	if m.role == "billing" {
		c.detail(http.StatusForbidden, "The user with a 'billing' role cannot have team-level permissions.")
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
	if !st.openMembership && !c.hasGlobalAccess() && !c.canAdminTeam(t) {
		// Sentry creates an access request instead of a membership.
		s.audit(st, c.p, "member.pending", m.Email()+" requested to join "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
		writeEmpty(c.w, http.StatusAccepted)
		return
	}
	st.setMemberTeam(m, t, "")
	s.audit(st, c.p, "member.join-team", joinTeamNote(c.p, m, t.slug), m.id, userID(m), map[string]any{"email": m.Email(), "team_slug": t.slug})
	s.stats.mutation("member.join-team", m.Email())
	c.json(http.StatusCreated, s.wireTeam(st, t, c.p))
}

// hasGlobalAccess: the caller's org role gives access to every team (manager,
// owner) or, for integrations, org-wide scopes.
func (c *call) hasGlobalAccess() bool {
	if c.p.kind == kindIntegration {
		return c.p.has("org:write") || c.p.has("team:write")
	}
	return c.p.member != nil && (c.p.member.role == "manager" || c.p.member.role == "owner") && c.p.has("org:write")
}

// canAdminTeam is Sentry's can_admin_team: on the team, with team:write
// there (an org role's scopes or the team role's) or org:write/member:write.
func (c *call) canAdminTeam(t *team) bool {
	cm := c.p.member
	if cm == nil {
		return false
	}
	r, on := cm.teams[t]
	if !on {
		return false
	}
	if c.p.has("org:write") || c.p.has("member:write") || c.p.has("team:write") {
		return true
	}
	return effectiveTeamRole(cm.role, r) == "admin"
}

func (s *Sandbox) removeMemberTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("org:read", "org:write", "org:admin", "team:admin") {
		return
	}
	m, t, ok := s.memberTeamTarget(c, st)
	if !ok {
		return
	}
	// _can_delete comes before the IdP check.
	if !(c.p.kind == kindUser && (m == c.p.member || c.p.has("org:write") || c.canAdminTeam(t))) {
		c.detail(http.StatusBadRequest, "You do not have permission to edit that user's membership.")
		return
	}
	if t.idp {
		c.detail(http.StatusForbidden, msgIdPTeam)
		return
	}
	if _, had := m.teams[t]; had {
		s.audit(st, c.p, "member.leave-team", leaveTeamNote(c.p, m, t.slug), m.id, userID(m), map[string]any{"email": m.Email(), "team_slug": t.slug})
		st.unsetMemberTeam(m, t)
		s.stats.mutation("member.leave-team", m.Email())
	}
	c.json(http.StatusOK, s.wireTeam(st, t, c.p))
}

func (s *Sandbox) putMemberTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("org:read", "org:write", "org:admin", "member:read", "member:write", "member:admin", "team:admin", "team:write") {
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
		TeamRole *string `json:"teamRole"`
		IsActive *bool   `json:"isActive"`
	}
	if !c.decode(&b) {
		return
	}
	if b.TeamRole == nil {
		// A partial serializer without teamRole (e.g. {}): a 200 that changes nothing.
		c.json(http.StatusOK, map[string]any{"isActive": true, "teamRole": nullable(old)})
		return
	}
	if teamRolePriority(*b.TeamRole) < 0 {
		c.json(http.StatusBadRequest, map[string][]string{"teamRole": {fmt.Sprintf("\"%s\" is not a valid choice.", *b.TeamRole)}})
		return
	}
	oldRole := old
	if oldRole == "" {
		oldRole = minTeamRoleFor(m.role)
	}
	if !c.canSetTeamRole(t, *b.TeamRole) || !c.canSetTeamRole(t, oldRole) {
		c.detail(http.StatusBadRequest, "You do not have permission to edit that user's membership.")
		return
	}
	stored := normalizeTeamRole(m.role, *b.TeamRole)
	if stored != old {
		s.stats.mutation("member.team-role", m.Email())
	}
	st.setMemberTeam(m, t, stored)
	s.audit(st, c.p, "member.edit", "changed team role of "+m.Email()+" on "+t.slug, m.id, userID(m),
		map[string]any{"email": m.Email(), "role": m.role, "team_slug": t.slug, "team_role": *b.TeamRole})
	c.json(http.StatusOK, map[string]any{"isActive": true, "teamRole": nullable(stored)})
}

// canSetTeamRole is Sentry's can_set_team_role: can_admin_team, or an org
// role that may manage the team role (manager, owner: any; admin: any), or a
// team role on t that may.
func (c *call) canSetTeamRole(t *team, role string) bool {
	if c.canAdminTeam(t) {
		return true
	}
	cm := c.p.member
	if cm == nil {
		return false
	}
	if rolePriority(cm.role) >= rolePriority("admin") {
		return true
	}
	if r, on := cm.teams[t]; on && teamRolePriority(effectiveTeamRole(cm.role, r)) >= teamRolePriority(role) && effectiveTeamRole(cm.role, r) == "admin" {
		return true
	}
	return false
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

// acceptInvite turns a pending invite into a member with a user, as Sentry's
// invite acceptance does: an expired link is refused, a user who is already a
// member makes the invite go away, otherwise the member gets the user (its
// invite email and token are cleared), its team memberships stay as stored
// (invites carry null team roles), and a member.accept-invite audit entry is
// written with the user as actor and target.
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
	if !m.inviteExpiry.IsZero() && now.After(m.inviteExpiry) {
		return MemberView{}, http.StatusBadRequest, "the invitation link has expired"
	}
	u := st.userByEmail[lower(m.email)]
	if u == nil {
		u = &user{id: st.newID(), name: nameFromEmail(m.email), email: m.email, dateJoined: now}
		u.emails = []userEmail{{id: st.newID(), email: m.email, verified: true}}
		st.addUser(u)
	} else if st.memberByUser[u.id] != nil {
		st.removeMember(m)
		return MemberView{}, http.StatusConflict, "user is already a member"
	}
	email := m.email
	m.user = u
	m.inviteToken = ""
	m.inviteExpiry = time.Time{}
	st.memberByUser[u.id] = m
	if st.memberByEmail[lower(email)] == m {
		delete(st.memberByEmail, lower(email))
	}
	st.memberByEmail[lower(m.Email())] = m
	st.scimOrder = nil
	m.invalidate()
	st.addAudit(&auditEntry{actorUserID: u.id, event: "member.accept-invite", ip: "127.0.0.1",
		note: "accepted the membership invite", targetObject: m.id, targetUserID: u.id,
		data: auditDataOf(m), dateCreated: now})
	s.stats.mutation("member.accept-invite", email)
	return viewOf(m), http.StatusOK, ""
}

// validateInviteEmail is the invite serializer's email field: required,
// at most 75 characters, and an address Django's EmailValidator accepts.
func validateInviteEmail(email string) string {
	switch {
	case email == "":
		return "This field may not be blank."
	case len([]rune(email)) > 75:
		return "Ensure this field has no more than 75 characters."
	case !djangoEmail(email):
		return "Enter a valid email address."
	}
	return ""
}

// djangoEmail follows django.core.validators.EmailValidator: a dot-atom or
// quoted user part, and a domain that is "localhost", a bracketed IP
// literal, or dot-separated labels ending in a TLD of 2-63 characters.
func djangoEmail(v string) bool {
	at := strings.LastIndex(v, "@")
	if at <= 0 || at == len(v)-1 {
		return false
	}
	userPart, domain := v[:at], v[at+1:]
	if !emailUserRe.MatchString(userPart) {
		return false
	}
	d := strings.ToLower(domain)
	if d == "localhost" {
		return true
	}
	if strings.HasPrefix(d, "[") && strings.HasSuffix(d, "]") {
		return net.ParseIP(strings.TrimPrefix(strings.TrimSuffix(d, "]"), "[")) != nil
	}
	return emailDomainRe.MatchString(d)
}

var (
	emailUserRe   = regexp.MustCompile(`(?i)^(?:[-!#$%&'*+/=?^_` + "`" + `{}|~0-9A-Z]+(?:\.[-!#$%&'*+/=?^_` + "`" + `{}|~0-9A-Z]+)*|"(?:[\x01-\x08\x0b\x0c\x0e-\x1f!#-\[\]-\x7f]|\\[\x01-\x09\x0b\x0c\x0e-\x7f])*")$`)
	emailDomainRe = regexp.MustCompile(`(?i)^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,62}[a-z0-9]$`)
)

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
