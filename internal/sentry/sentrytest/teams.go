package sentrytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

func (s *Sandbox) listTeams(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("org:read", "org:write", "org:admin", "team:read") {
		return
	}
	pg, ok := c.offsetPage()
	if !ok {
		return
	}
	items := st.sortedTeams()
	if q := strings.TrimSpace(c.r.URL.Query().Get("query")); q != "" {
		var out []*team
		var free []string
		var filters []func(*team) bool
		unknown := false
		for _, tok := range tokenizeQuery(q) {
			k, v, has := strings.Cut(tok, ":")
			if !has {
				free = append(free, tok)
				continue
			}
			vals := strings.Split(v, ",")
			switch k {
			case "slug":
				filters = append(filters, func(t *team) bool { return contains(vals, t.slug) })
			case "id":
				for _, v := range vals {
					if _, err := strconv.ParseInt(v, 10, 64); err != nil {
						c.detail(http.StatusBadRequest, "Invalid id value")
						return
					}
				}
				filters = append(filters, func(t *team) bool { return contains(vals, t.idStr()) })
			case "hasExternalTeams":
				want := strings.EqualFold(v, "true")
				filters = append(filters, func(*team) bool { return !want })
			case "query":
				free = append(free, v)
			default:
				unknown = true
			}
		}
		if len(free) > 0 {
			text := lower(strings.Join(free, " "))
			filters = append(filters, func(t *team) bool {
				return strings.Contains(lower(t.name), text) || strings.Contains(t.slug, text)
			})
		}
		if !unknown {
			for _, t := range items {
				keep := true
				for _, f := range filters {
					if !f(t) {
						keep = false
						break
					}
				}
				if keep {
					out = append(out, t)
				}
			}
		}
		items = out
	}
	// organization_teams.py: detailed (the default) expands projects and
	// externalTeams; detailed=0 expands nothing.
	var expand []string
	if c.r.URL.Query().Get("detailed") != "0" {
		expand = []string{"projects", "externalTeams"}
	}
	lo, hi, more := pg.window(len(items))
	res := make([]wireTeam, 0, hi-lo)
	for _, t := range items[lo:hi] {
		res = append(res, s.wireTeam(st, t, c.p, expand...))
	}
	c.setOffsetLink(pg, more)
	c.json(http.StatusOK, res)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func validSlug(s string) bool {
	return s != "" && len(s) <= 50 && slugPattern(s)
}

// slugPattern is SentrySerializerSlugField's pattern: lowercase letters,
// digits, underscores and hyphens, not entirely numeric.
func slugPattern(s string) bool {
	digits := true
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
		case r >= 'a' && r <= 'z', r == '_', r == '-':
			digits = false
		default:
			return false
		}
	}
	return !digits
}

// createTeamREST follows organization_teams.py (post): TeamPostSerializer
// validates, the team is created (a slug derived from the name is made
// unique by Team.save's slugify_instance; a given slug that is taken is a
// 409), and an authenticated user who is a member of the organization is added
// to the team with no team role (OrganizationMemberTeam's role stays null),
// with a member.join-team entry before the team.create one.
func (s *Sandbox) createTeamREST(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("org:write", "org:admin", "team:write") {
		return
	}
	var b struct {
		Slug *string `json:"slug"`
		Name *string `json:"name"`
	}
	if !c.decode(&b) {
		return
	}
	slug, name := "", ""
	if b.Slug != nil {
		slug = *b.Slug
	}
	if b.Name != nil {
		name = *b.Name
	}
	errs := map[string][]string{}
	if slug != "" {
		if len(slug) > 50 {
			errs["slug"] = append(errs["slug"], "Ensure this field has no more than 50 characters.")
		}
		if !slugPattern(slug) {
			errs["slug"] = append(errs["slug"], msgInvalidSlug)
		}
	}
	if len([]rune(name)) > 64 {
		errs["name"] = []string{"Ensure this field has no more than 64 characters."}
	}
	if len(errs) > 0 {
		c.json(http.StatusBadRequest, errs)
		return
	}
	if slug == "" && name == "" {
		c.json(http.StatusBadRequest, map[string][]string{"non_field_errors": {"Name or slug is required"}})
		return
	}
	if slug != "" && st.teamBySlug[slug] != nil {
		c.json(http.StatusConflict, map[string]any{"non_field_errors": []string{msgTeamSlugConflict},
			"detail": msgTeamSlugConflict})
		return
	}
	id := st.newID()
	if slug == "" {
		slug = uniqueSlug(slugify(name), id, func(x string) bool { return st.teamBySlug[x] != nil })
	}
	if name == "" {
		name = slug
	}
	t := &team{id: id, slug: slug, name: name, dateCreated: s.now().UTC(),
		members: map[*member]struct{}{}, projects: map[*project]struct{}{}}
	st.addTeam(t)
	if c.p.kind == kindUser && c.p.member != nil {
		m := c.p.member
		st.setMemberTeam(m, t, "")
		m.invalidate()
		s.audit(st, c.p, "member.join-team", joinTeamNote(c.p, m, t.slug), m.joined[t], userID(m),
			map[string]any{"email": m.Email(), "team_slug": t.slug})
		s.stats.mutation("member.join-team", m.Email())
	}
	s.audit(st, c.p, "team.create", "created team "+slug, t.id, 0, teamAuditData(t, 0))
	s.stats.mutation("team.create", slug)
	c.json(http.StatusCreated, s.wireTeam(st, t, c.p))
}

const (
	msgInvalidSlug      = "Enter a valid slug consisting of lowercase letters, numbers, underscores or hyphens. It cannot be entirely numeric."
	msgTeamSlugConflict = "A team with this slug already exists."
)

// uniqueSlug is slugify_instance's uniqueness step: a taken base slug gets a
// short random-looking suffix (derived from id here, so tests are stable).
func uniqueSlug(base string, id int64, taken func(string) bool) string {
	if base == "" {
		base = "team"
	}
	if len(base) > 50 {
		base = base[:50]
	}
	if !taken(base) {
		return base
	}
	for n := int64(0); ; n++ {
		suffix := strconv.FormatInt((id+n)*2654435761%(36*36*36*36), 36)
		cut := min(len(base), 50-len(suffix)-1)
		if cand := base[:cut] + "-" + suffix; !taken(cand) {
			return cand
		}
	}
}

// teamAuditData is Team.get_audit_log_data (src/sentry/models/team.py).
func teamAuditData(t *team, status int) map[string]any {
	return map[string]any{"id": t.id, "slug": t.slug, "name": t.name, "status": status, "org_role": nil}
}

// joinTeamNote renders member.join-team as MemberJoinTeamAuditLogEvent does.
func joinTeamNote(p *principal, m *member, slug string) string {
	if p != nil && p.user != nil && m.user == p.user {
		return "joined team " + slug
	}
	return "added " + m.Email() + " to team " + slug
}

func (c *call) pathTeam(st *state) *team {
	t := st.teamByIDOrSlug(c.r.PathValue("team_id_or_slug"))
	if t == nil {
		c.detail(http.StatusNotFound, msgNotFound)
	}
	return t
}

func (s *Sandbox) getTeam(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("team:read", "team:write", "team:admin") {
		return
	}
	if t := c.pathTeam(st); t != nil {
		// team_details.py (get): organization is expanded unless collapsed.
		q := c.r.URL.Query()
		expand := append([]string(nil), q["expand"]...)
		if !contains(q["collapse"], "organization") {
			expand = append(expand, "organization")
		}
		c.json(http.StatusOK, s.wireTeam(st, t, c.p, expand...))
	}
}

func (s *Sandbox) putTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("team:write", "team:admin") {
		return
	}
	t := c.pathTeam(st)
	if t == nil {
		return
	}
	if t.idp {
		c.detail(http.StatusForbidden, msgIdPTeam)
		return
	}
	var b struct {
		Slug string `json:"slug"`
		Name string `json:"name"`
	}
	if !c.decode(&b) {
		return
	}
	if b.Slug != "" && b.Slug != t.slug {
		if !validSlug(b.Slug) {
			c.json(http.StatusBadRequest, map[string][]string{"slug": {"Enter a valid slug consisting of lowercase letters, numbers, underscores or hyphens. It cannot be entirely numeric."}})
			return
		}
		if st.teamBySlug[b.Slug] != nil {
			c.json(http.StatusBadRequest, map[string][]string{"slug": {"The slug \"" + b.Slug + "\" is already in use."}})
			return
		}
		delete(st.teamBySlug, t.slug)
		t.slug = b.Slug
		st.teamBySlug[t.slug] = t
		st.teamOrder = nil
	}
	if b.Name != "" {
		t.name = b.Name
	}
	s.audit(st, c.p, "team.edit", "edited team "+t.slug, t.id, 0, teamAuditData(t, 0))
	c.json(http.StatusOK, s.wireTeam(st, t, c.p))
}

func (s *Sandbox) deleteTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("team:admin") {
		return
	}
	t := c.pathTeam(st)
	if t == nil {
		return
	}
	if t.idp {
		c.detail(http.StatusForbidden, msgIdPTeam)
		return
	}
	// team_details.py (delete): the slug is released by renaming it to
	// "<slug>-<uuid hex>"[:50], the team is set pending deletion and a
	// deletion is scheduled with no delay; the team.remove entry carries the
	// renamed team. The sandbox drops the team at once.
	renamed := (t.slug + "-" + fmt.Sprintf("%016x%016x", uint64(t.id)*0x9e3779b97f4a7c15, uint64(s.now().UnixNano())))
	if len(renamed) > 50 {
		renamed = renamed[:50]
	}
	gone := *t
	gone.slug = renamed
	s.dropTeam(st, t)
	s.audit(st, c.p, "team.remove", "removed team "+renamed, t.id, 0, teamAuditData(&gone, 1))
	s.stats.mutation("team.remove", t.slug)
	writeEmpty(c.w, http.StatusNoContent)
}

// dropTeam removes t and its memberships and project links. Call with s.mu held.
func (s *Sandbox) dropTeam(st *state, t *team) {
	for m := range t.members {
		delete(m.teams, t)
		delete(m.joined, t)
		m.invalidate()
	}
	for pr := range t.projects {
		delete(pr.teams, t)
	}
	delete(st.teams, t.id)
	delete(st.teamBySlug, t.slug)
	st.teamOrder = nil
}

func (s *Sandbox) teamMembers(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("team:read", "team:write", "team:admin") {
		return
	}
	t := c.pathTeam(st)
	if t == nil {
		return
	}
	pg, ok := c.offsetPage()
	if !ok {
		return
	}
	// team_members.py runs OrganizationMemberTeam rows of approved members
	// (pending invites included: their invite_status is approved; the
	// docstring's "will not include members with pending invites" is not what
	// the query does) ordered by organizationmember__email, then the row id.
	// The stored email is null once a user is attached, and PostgreSQL sorts
	// nulls last: pending invites by email first, then members in join order.
	ms := make([]*member, 0, len(t.members))
	for m := range t.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if a.pending() != b.pending() {
			return a.pending()
		}
		if a.pending() && a.email != b.email {
			return a.email < b.email
		}
		return a.joined[t] < b.joined[t]
	})
	lo, hi, more := pg.window(len(ms))
	var buf []byte
	buf = append(buf, '[')
	for i, m := range ms[lo:hi] {
		if i > 0 {
			buf = append(buf, ',')
		}
		// member list JSON + teamRole/teamSlug, spliced to reuse the cache.
		mj := s.memberListJSON(st, m)
		buf = append(buf, mj[:len(mj)-1]...)
		buf = append(buf, `,"teamRole":`...)
		if r := m.teams[t]; r != "" {
			buf = strconv.AppendQuote(buf, r)
		} else {
			buf = append(buf, "null"...)
		}
		buf = append(buf, `,"teamSlug":`...)
		tb, _ := json.Marshal(t.slug)
		buf = append(buf, tb...)
		buf = append(buf, '}')
	}
	buf = append(buf, ']')
	c.setOffsetLink(pg, more)
	writeRaw(c.w, http.StatusOK, buf)
}

// ---- projects ----

func (s *Sandbox) listProjects(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("project:read", "project:write", "project:admin", "org:read") {
		return
	}
	pg, ok := c.offsetPage()
	if !ok {
		return
	}
	ps := make([]*project, 0, len(st.projects))
	for _, p := range st.projects {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].slug < ps[j].slug })
	lo, hi, more := pg.window(len(ps))
	res := make([]wireProject, 0, hi-lo)
	for _, p := range ps[lo:hi] {
		res = append(res, s.wireProject(p))
	}
	c.setOffsetLink(pg, more)
	c.json(http.StatusOK, res)
}

func (s *Sandbox) teamProjects(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("project:read", "project:write", "project:admin") {
		return
	}
	t := c.pathTeam(st)
	if t == nil {
		return
	}
	pg, ok := c.offsetPage()
	if !ok {
		return
	}
	ps := sortedProjects(t.projects)
	lo, hi, more := pg.window(len(ps))
	res := make([]wireProject, 0, hi-lo)
	for _, p := range ps[lo:hi] {
		res = append(res, s.wireProject(p))
	}
	c.setOffsetLink(pg, more)
	c.json(http.StatusOK, res)
}

// projectTeam follows project_team_details.py: an unknown team is 404
// "Team does not exist."; POST is 201 and DELETE 200 with the project, and
// both write their audit entry even when nothing changed (add_team and
// remove_team are idempotent, the audit call is unconditional).
func (s *Sandbox) projectTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("project:write", "project:admin") {
		return
	}
	p := st.projectByIDOrSlug(c.r.PathValue("project_id_or_slug"))
	if p == nil {
		c.detail(http.StatusNotFound, msgNotFound)
		return
	}
	t := st.teamByIDOrSlug(c.r.PathValue("team_id_or_slug"))
	if t == nil {
		c.detail(http.StatusNotFound, "Team does not exist.")
		return
	}
	data := map[string]any{"team_slug": t.slug, "project_slug": p.slug}
	if c.r.Method == http.MethodPost {
		if _, on := p.teams[t]; !on {
			p.teams[t] = struct{}{}
			t.projects[p] = struct{}{}
			s.stats.mutation("project-team.add", p.slug+"/"+t.slug)
		}
		s.audit(st, c.p, "project-team.add", "added team "+t.slug+" to project "+p.slug, p.id, 0, data)
		c.json(http.StatusCreated, s.wireProject(p))
		return
	}
	if _, on := p.teams[t]; on {
		delete(p.teams, t)
		delete(t.projects, p)
		s.stats.mutation("project-team.remove", p.slug+"/"+t.slug)
	}
	s.audit(st, c.p, "project-team.remove", "removed team "+t.slug+" from project "+p.slug, p.id, 0, data)
	c.json(http.StatusOK, s.wireProject(p))
}

func (s *Sandbox) createTeamProject(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("project:write", "project:admin") {
		return
	}
	t := c.pathTeam(st)
	if t == nil {
		return
	}
	var b struct {
		Name     string  `json:"name"`
		Slug     *string `json:"slug"`
		Platform *string `json:"platform"`
	}
	if !c.decode(&b) {
		return
	}
	if strings.TrimSpace(b.Name) == "" {
		c.json(http.StatusBadRequest, map[string][]string{"name": {"This field is required."}})
		return
	}
	slug := slugify(b.Name)
	if b.Slug != nil && *b.Slug != "" {
		slug = *b.Slug
	}
	if !validSlug(slug) {
		c.json(http.StatusBadRequest, map[string][]string{"slug": {"Enter a valid slug consisting of lowercase letters, numbers, underscores or hyphens. It cannot be entirely numeric."}})
		return
	}
	if st.projectSlug[slug] != nil {
		c.json(http.StatusConflict, map[string]string{"detail": "A project with this slug already exists."})
		return
	}
	p := &project{id: st.newID(), slug: slug, name: b.Name, dateCreated: s.now().UTC(), teams: map[*team]struct{}{t: {}}}
	if b.Platform != nil {
		p.platform = *b.Platform
	}
	t.projects[p] = struct{}{}
	st.projects[p.id] = p
	st.projectSlug[slug] = p
	s.audit(st, c.p, "project.create", "created project "+slug, p.id, 0, map[string]any{"slug": slug})
	c.json(http.StatusCreated, s.wireProject(p))
}

// leaveTeamNote renders member.leave-team as MemberLeaveTeamAuditLogEvent does.
func leaveTeamNote(p *principal, m *member, slug string) string {
	if p != nil && p.user != nil && m.user == p.user {
		return "left team " + slug
	}
	return "removed " + m.Email() + " from team " + slug
}
