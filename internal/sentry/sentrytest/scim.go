package sentrytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

const (
	scimUserSchema  = "urn:ietf:params:scim:schemas:core:2.0:User"
	scimGroupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"
	scimListSchema  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	scimPatchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

type scimEmail struct {
	Primary bool   `json:"primary"`
	Value   string `json:"value"`
	Type    string `json:"type"`
}

type scimName struct {
	GivenName  string `json:"givenName"`
	FamilyName string `json:"familyName"`
}

type scimMeta struct {
	ResourceType string `json:"resourceType"`
}

type scimUser struct {
	Schemas       []string    `json:"schemas"`
	ID            string      `json:"id"`
	UserName      string      `json:"userName"`
	Emails        []scimEmail `json:"emails"`
	Name          scimName    `json:"name"`
	Active        *bool       `json:"active,omitempty"`
	Meta          scimMeta    `json:"meta"`
	SentryOrgRole string      `json:"sentryOrgRole"`
}

type scimGroupMember struct {
	Value   string `json:"value"`
	Display string `json:"display"`
}

type scimGroup struct {
	Schemas     []string           `json:"schemas"`
	ID          string             `json:"id"`
	DisplayName string             `json:"displayName"`
	Members     *[]scimGroupMember `json:"members,omitempty"`
	Meta        scimMeta           `json:"meta"`
}

type scimList struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []any    `json:"Resources"`
}

func (s *Sandbox) scimUserOf(st *state, m *member) scimUser {
	u := scimUser{Schemas: []string{scimUserSchema}, ID: m.idStr(), UserName: m.Email(),
		Emails: []scimEmail{{Primary: true, Value: m.Email(), Type: "work"}},
		Name:   scimName{GivenName: "N/A", FamilyName: "N/A"}, Meta: scimMeta{ResourceType: "User"}, SentryOrgRole: m.role}
	if st.scimProvider != "azure" {
		t := true
		u.Active = &t
	}
	return u
}

func (s *Sandbox) scimGroupOf(t *team, withMembers bool) scimGroup {
	g := scimGroup{Schemas: []string{scimGroupSchema}, ID: t.idStr(), DisplayName: t.name, Meta: scimMeta{ResourceType: "Group"}}
	if withMembers {
		ms := make([]*member, 0, len(t.members))
		for m := range t.members {
			ms = append(ms, m)
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].id < ms[j].id })
		list := make([]scimGroupMember, 0, len(ms))
		for _, m := range ms {
			list = append(list, scimGroupMember{Value: m.idStr(), Display: m.Email()})
		}
		g.Members = &list
	}
	return g
}

// scimGate applies the endpoint scopes and the "SCIM enabled" requirement.
func (c *call) scimGate(st *state, scopes ...string) bool {
	if !c.need(scopes...) {
		return false
	}
	if !st.scimEnabled || !st.samlEnabled {
		c.detail(http.StatusForbidden, msgNoPermission)
		return false
	}
	return true
}

// parseSCIMFilter implements Sentry's single-condition filter grammar.
func parseSCIMFilter(f string) (key, value string, ok bool) {
	if strings.Contains(f, ",") {
		return "", "", false
	}
	parts := strings.Split(f, " eq ")
	if len(parts) != 2 {
		return "", "", false
	}
	key = strings.TrimSpace(parts[0])
	v := strings.TrimSpace(parts[1])
	if len(v) < 2 {
		return "", "", false
	}
	value = v[1 : len(v)-1]
	switch key {
	case "userName", "displayName":
	case "value":
		if _, err := strconv.Atoi(value); err != nil {
			return "", "", false
		}
	default:
		return "", "", false
	}
	return key, value, true
}

func invalidFilter(w http.ResponseWriter) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"schemas": []string{scimErrorSchema}, "scimType": "invalidFilter"})
}

// scimPaging parses startIndex and count.
func (c *call) scimPaging() (start, count int, ok bool) {
	q := c.r.URL.Query()
	start, count = 1, 100
	if v := q.Get("startIndex"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeJSON(c.w, http.StatusBadRequest, map[string]any{"schemas": []string{scimErrorSchema}, "scimType": "invalidValue",
				"detail": `{"startIndex":["Ensure this value is greater than or equal to 1."]}`})
			return 0, 0, false
		}
		start = n
	}
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeJSON(c.w, http.StatusBadRequest, map[string]any{"schemas": []string{scimErrorSchema}, "scimType": "invalidValue",
				"detail": `{"count":["Ensure this value is greater than or equal to 0."]}`})
			return 0, 0, false
		}
		count = n
	}
	return start, count, true
}

func scimPage[T any](items []T, start, count int) []T {
	lo := start - 1
	if lo > len(items) {
		lo = len(items)
	}
	hi := lo + count
	if hi > len(items) {
		hi = len(items)
	}
	return items[lo:hi]
}

// ---- Users ----

func (s *Sandbox) scimListUsers(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.scimGate(st, "member:read", "member:write", "member:admin") {
		return
	}
	start, count, ok := c.scimPaging()
	if !ok {
		return
	}
	var items []*member
	if f := c.r.URL.Query().Get("filter"); f != "" {
		_, v, ok := parseSCIMFilter(f)
		if !ok {
			invalidFilter(c.w)
			return
		}
		if m := st.memberByEmail[lower(v)]; m != nil {
			items = []*member{m}
		}
	} else {
		items = st.sortedSCIM()
	}
	pg := scimPage(items, start, count)
	res := make([]any, 0, len(pg))
	for _, m := range pg {
		res = append(res, s.scimUserOf(st, m))
	}
	c.json(http.StatusOK, scimList{Schemas: []string{scimListSchema}, TotalResults: len(items), StartIndex: start,
		ItemsPerPage: len(res), Resources: res})
}

func (c *call) scimMember(st *state) *member {
	m := st.memberByIDStr(c.r.PathValue("member_id"))
	if m == nil {
		scimError(c.w, http.StatusNotFound, msgNotFound)
	}
	return m
}

func (s *Sandbox) scimGetUser(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.scimGate(st, "member:read", "member:write", "member:admin") {
		return
	}
	if m := c.scimMember(st); m != nil {
		c.json(http.StatusOK, s.scimUserOf(st, m))
	}
}

type scimOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

type scimPatch struct {
	Schemas    []string `json:"schemas"`
	Operations []scimOp `json:"Operations"`
}

// isFalse accepts false and the strings "false"/"False" (Entra ID).
func isFalse(raw json.RawMessage) bool {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return !b
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.EqualFold(s, "false")
	}
	return false
}

func (s *Sandbox) scimPatchUser(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "member:write", "member:admin") {
		return
	}
	m := c.scimMember(st)
	if m == nil {
		return
	}
	var p scimPatch
	if err := json.Unmarshal(c.body, &p); err != nil || p.Operations == nil {
		scimError(c.w, http.StatusBadRequest, `{"Operations":["This field is required."]}`)
		return
	}
	if len(p.Operations) > 100 {
		scimError(c.w, http.StatusBadRequest, `{"Operations":["Ensure this field has no more than 100 elements."]}`)
		return
	}
	deactivate := false
	for _, op := range p.Operations {
		if !strings.EqualFold(op.Op, "replace") {
			scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
			return
		}
		switch {
		case strings.EqualFold(op.Path, "active") && isFalse(op.Value):
			deactivate = true
		case op.Path == "":
			var obj map[string]json.RawMessage
			if json.Unmarshal(op.Value, &obj) != nil {
				scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
				return
			}
			a, ok := obj["active"]
			if !ok || !isFalse(a) {
				scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
				return
			}
			deactivate = true
		default:
			scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
			return
		}
	}
	if !deactivate {
		scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
		return
	}
	if !c.scimCanDelete(st, m) {
		return
	}
	s.removeMember(st, c.p, m)
	writeEmpty(c.w, http.StatusNoContent)
}

func (c *call) scimCanDelete(st *state, m *member) bool {
	if m.flags[flagPartnership] {
		c.detail(http.StatusForbidden, msgPartnership)
		return false
	}
	if st.isOnlyOwner(m) {
		c.detail(http.StatusForbidden, msgLastOwner)
		return false
	}
	return true
}

func (s *Sandbox) scimDeleteUser(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "member:admin") {
		return
	}
	m := c.scimMember(st)
	if m == nil {
		return
	}
	if !c.scimCanDelete(st, m) {
		return
	}
	s.removeMember(st, c.p, m)
	writeEmpty(c.w, http.StatusNoContent)
}

func scimRole(r string) (string, bool) {
	r = strings.ToLower(strings.TrimSpace(r))
	switch r {
	case "member", "admin", "manager", "billing":
		return r, true
	}
	return "", false
}

func (s *Sandbox) scimCreateUser(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "member:write", "member:admin") {
		return
	}
	var b struct {
		UserName      string `json:"userName"`
		SentryOrgRole string `json:"sentryOrgRole"`
	}
	if err := json.Unmarshal(c.body, &b); err != nil || strings.TrimSpace(b.UserName) == "" {
		scimError(c.w, http.StatusBadRequest, `{"email":["This field is required."]}`)
		return
	}
	role := "member"
	restricted := false
	if strings.TrimSpace(b.SentryOrgRole) != "" {
		r, ok := scimRole(b.SentryOrgRole)
		if !ok {
			scimError(c.w, http.StatusBadRequest, "Invalid organization role.")
			return
		}
		role, restricted = r, true
	}
	email := strings.TrimSpace(b.UserName)
	if ex := st.memberByEmail[lower(email)]; ex != nil {
		if !ex.pending() {
			scimError(c.w, http.StatusConflict, "User already exists in the database.")
			return
		}
		scimError(c.w, http.StatusBadRequest, fmt.Sprintf(`{"email":["The user %s has already been invited"]}`, email))
		return
	}
	if u := st.userByEmail[lower(email)]; u != nil && st.memberByUser[u.id] != nil {
		scimError(c.w, http.StatusConflict, "User already exists in the database.")
		return
	}
	if !s.inviteQuota(email) {
		c.detail(http.StatusTooManyRequests, msgInviteQuota)
		return
	}
	m := s.createInvite(st, c.p, email, role, map[string]bool{flagIdPProvisioned: true, flagIdPRoleRestrict: restricted})
	c.json(http.StatusCreated, s.scimUserOf(st, m))
}

func (s *Sandbox) scimPutUser(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "member:write", "member:admin") {
		return
	}
	m := c.scimMember(st)
	if m == nil {
		return
	}
	var b struct {
		SentryOrgRole string `json:"sentryOrgRole"`
	}
	if err := json.Unmarshal(c.body, &b); err != nil {
		scimError(c.w, http.StatusBadRequest, "Malformed request.")
		return
	}
	before := m.role
	switch {
	case m.role == "owner":
		m.flags[flagIdPProvisioned] = true
		m.flags[flagIdPRoleRestrict] = false
	case strings.TrimSpace(b.SentryOrgRole) != "":
		r, ok := scimRole(b.SentryOrgRole)
		if !ok {
			scimError(c.w, http.StatusBadRequest, "Invalid organization role.")
			return
		}
		m.role = r
		m.flags[flagIdPRoleRestrict] = true
		m.flags[flagIdPProvisioned] = true
	default:
		if m.flags[flagIdPRoleRestrict] || m.role != "member" {
			if m.flags[flagIdPRoleRestrict] {
				m.role = "member"
			}
			m.flags[flagIdPRoleRestrict] = false
		}
	}
	if m.role != before {
		for t, r := range m.teams {
			m.teams[t] = normalizeTeamRole(m.role, r)
		}
		s.stats.mutation("member.edit", m.Email())
		s.audit(st, c.p, "member.edit", "edited member "+m.Email(), m.id, userID(m), map[string]any{"role": m.role})
	}
	m.invalidate()
	c.json(http.StatusOK, s.scimUserOf(st, m))
}

// ---- Groups ----

func (s *Sandbox) scimListGroups(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.scimGate(st, "team:read", "team:write", "team:admin") {
		return
	}
	start, count, ok := c.scimPaging()
	if !ok {
		return
	}
	withMembers := !strings.Contains(c.r.URL.Query().Get("excludedAttributes"), "members")
	var items []*team
	if f := c.r.URL.Query().Get("filter"); f != "" {
		_, v, ok := parseSCIMFilter(f)
		if !ok {
			invalidFilter(c.w)
			return
		}
		if t := st.teamBySlug[slugify(v)]; t != nil {
			items = []*team{t}
		}
	} else {
		items = st.sortedTeams()
	}
	pg := scimPage(items, start, count)
	res := make([]any, 0, len(pg))
	for _, t := range pg {
		res = append(res, s.scimGroupOf(t, withMembers))
	}
	c.json(http.StatusOK, scimList{Schemas: []string{scimListSchema}, TotalResults: len(items), StartIndex: start,
		ItemsPerPage: len(res), Resources: res})
}

func (c *call) scimTeam(st *state) *team {
	t := st.teamByIDOrSlug(c.r.PathValue("team_id_or_slug"))
	if t == nil {
		scimError(c.w, http.StatusNotFound, "Group not found.")
	}
	return t
}

func (s *Sandbox) scimGetGroup(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.scimGate(st, "team:read", "team:write", "team:admin") {
		return
	}
	if t := c.scimTeam(st); t != nil {
		c.json(http.StatusOK, s.scimGroupOf(t, !strings.Contains(c.r.URL.Query().Get("excludedAttributes"), "members")))
	}
}

func (s *Sandbox) scimCreateGroup(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "team:write", "team:admin") {
		return
	}
	var b struct {
		DisplayName string `json:"displayName"`
	}
	if err := json.Unmarshal(c.body, &b); err != nil || strings.TrimSpace(b.DisplayName) == "" {
		scimError(c.w, http.StatusBadRequest, `{"displayName":["This field is required."]}`)
		return
	}
	slug := slugify(b.DisplayName)
	if st.teamBySlug[slug] != nil {
		c.json(http.StatusConflict, map[string]any{"non_field_errors": []string{"A team with this slug already exists."},
			"detail": "A team with this slug already exists."})
		return
	}
	t := s.createTeam(st, c.p, slug, b.DisplayName)
	t.idp = true
	c.json(http.StatusCreated, s.scimGroupOf(t, true))
}

func (s *Sandbox) createTeam(st *state, p *principal, slug, name string) *team {
	t := &team{id: st.newID(), slug: slug, name: name, dateCreated: s.now().UTC(),
		members: map[*member]struct{}{}, projects: map[*project]struct{}{}}
	st.addTeam(t)
	s.audit(st, p, "team.create", "created team "+slug, t.id, 0, map[string]any{"slug": slug})
	s.stats.mutation("team.create", slug)
	return t
}

func parseMemberRefs(raw json.RawMessage) ([]string, bool) {
	var refs []struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &refs); err != nil {
		return nil, false
	}
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		var s string
		if json.Unmarshal(r.Value, &s) != nil {
			var n int64
			if json.Unmarshal(r.Value, &n) != nil {
				return nil, false
			}
			s = strconv.FormatInt(n, 10)
		}
		out = append(out, s)
	}
	return out, true
}

func (s *Sandbox) scimPatchGroup(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "team:write", "team:admin") {
		return
	}
	t := c.scimTeam(st)
	if t == nil {
		return
	}
	var p scimPatch
	if err := json.Unmarshal(c.body, &p); err != nil || p.Schemas == nil || p.Operations == nil {
		scimError(c.w, http.StatusBadRequest, `{"schemas":["This field is required."]}`)
		return
	}
	if len(p.Operations) > 100 {
		scimError(c.w, http.StatusBadRequest, "Too many patch ops sent, limit is 100.")
		return
	}
	lookup := func(ids []string) ([]*member, bool) {
		var out []*member
		for _, id := range ids {
			m := st.memberByIDStr(id)
			if m == nil {
				scimError(c.w, http.StatusNotFound, "User not found.")
				return nil, false
			}
			out = append(out, m)
		}
		return out, true
	}
	apply := false // first pass validates every operation, second applies them
	join := func(m *member) {
		if _, on := m.teams[t]; !on && apply {
			st.setMemberTeam(m, t, "")
			s.audit(st, c.p, "member.join-team", m.Email()+" joined team "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
			s.stats.mutation("member.join-team", m.Email())
		}
	}
	leave := func(m *member) {
		if _, on := m.teams[t]; on && apply {
			st.unsetMemberTeam(m, t)
			s.audit(st, c.p, "member.leave-team", m.Email()+" left team "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
			s.stats.mutation("member.leave-team", m.Email())
		}
	}
	rename := func(name string) bool {
		slug := slugify(name)
		if o := st.teamBySlug[slug]; o != nil && o != t {
			scimError(c.w, http.StatusBadRequest, `{"slug":["A team with this slug already exists."]}`)
			return false
		}
		if !apply {
			return true
		}
		delete(st.teamBySlug, t.slug)
		t.name, t.slug = name, slug
		st.teamBySlug[slug] = t
		st.teamOrder = nil
		for m := range t.members {
			m.invalidate()
		}
		s.audit(st, c.p, "team.edit", "edited team "+slug, t.id, 0, map[string]any{"slug": slug})
		return true
	}
	for pass := 0; pass < 2; pass++ {
		apply = pass == 1
		if !s.scimGroupOps(c, st, t, p.Operations, lookup, join, leave, rename) {
			return
		}
	}
	t.idp = true
	writeEmpty(c.w, http.StatusNoContent)
}

// scimGroupOps runs the PATCH operations through the given effects; it
// answers the request and returns false on the first invalid operation.
func (s *Sandbox) scimGroupOps(c *call, st *state, t *team, ops []scimOp, lookup func([]string) ([]*member, bool),
	join, leave func(*member), rename func(string) bool) bool {
	for _, op := range ops {
		switch strings.ToLower(op.Op) {
		case "add":
			if op.Path != "members" {
				scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
				return false
			}
			ids, ok := parseMemberRefs(op.Value)
			if !ok {
				scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
				return false
			}
			ms, ok := lookup(ids)
			if !ok {
				return false
			}
			for _, m := range ms {
				join(m)
			}
		case "remove":
			var ids []string
			if rest, ok := strings.CutPrefix(op.Path, "members["); ok && strings.HasSuffix(rest, "]") {
				_, v, ok := parseSCIMFilter(strings.TrimSuffix(rest, "]"))
				if !ok {
					invalidFilter(c.w)
					return false
				}
				ids = []string{v}
			} else if op.Path == "members" {
				var ok bool
				if ids, ok = parseMemberRefs(op.Value); !ok {
					scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
					return false
				}
			} else {
				scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
				return false
			}
			ms, ok := lookup(ids)
			if !ok {
				return false
			}
			for _, m := range ms {
				leave(m)
			}
		case "replace":
			switch {
			case op.Path == "members":
				ids, ok := parseMemberRefs(op.Value)
				if !ok {
					scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
					return false
				}
				ms, ok := lookup(ids)
				if !ok {
					return false
				}
				keep := map[*member]bool{}
				for _, m := range ms {
					keep[m] = true
				}
				cur := make([]*member, 0, len(t.members))
				for m := range t.members {
					cur = append(cur, m)
				}
				sort.Slice(cur, func(i, j int) bool { return cur[i].id < cur[j].id })
				for _, m := range cur {
					if !keep[m] {
						leave(m)
					}
				}
				for _, m := range ms {
					join(m)
				}
			case op.Path == "displayName":
				var name string
				if json.Unmarshal(op.Value, &name) != nil || name == "" {
					scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
					return false
				}
				if !rename(name) {
					return false
				}
			case op.Path == "":
				var obj struct {
					DisplayName string `json:"displayName"`
				}
				if json.Unmarshal(op.Value, &obj) != nil || obj.DisplayName == "" {
					scimError(c.w, http.StatusBadRequest, "Invalid Replace attr. Only displayName and members supported.")
					return false
				}
				if !rename(obj.DisplayName) {
					return false
				}
			default:
				scimError(c.w, http.StatusBadRequest, "Invalid Replace attr. Only displayName and members supported.")
				return false
			}
		default:
			scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
			return false
		}
	}
	return true
}

func (s *Sandbox) deleteTeamLocked(st *state, p *principal, t *team) {
	for m := range t.members {
		delete(m.teams, t)
	}
	for pr := range t.projects {
		delete(pr.teams, t)
	}
	delete(st.teams, t.id)
	delete(st.teamBySlug, t.slug)
	st.teamOrder = nil
	s.audit(st, p, "team.remove", "removed team "+t.slug, t.id, 0, map[string]any{"slug": t.slug})
	s.stats.mutation("team.remove", t.slug)
}

func (s *Sandbox) scimDeleteGroup(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "team:admin") {
		return
	}
	t := c.scimTeam(st)
	if t == nil {
		return
	}
	s.deleteTeamLocked(st, c.p, t)
	writeEmpty(c.w, http.StatusNoContent)
}
