package sentrytest

import (
	"encoding/json"
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
	detailed := c.r.URL.Query().Get("detailed") != "0"
	lo, hi, more := pg.window(len(items))
	res := make([]wireTeam, 0, hi-lo)
	for _, t := range items[lo:hi] {
		res = append(res, s.wireTeam(st, t, c.p, detailed))
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
	if s == "" || len(s) > 50 {
		return false
	}
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
	if slug == "" && name == "" {
		c.json(http.StatusBadRequest, map[string][]string{"non_field_errors": {"A name or slug is required"}})
		return
	}
	if slug == "" {
		slug = slugify(name)
	}
	if !validSlug(slug) {
		c.json(http.StatusBadRequest, map[string][]string{"slug": {"Enter a valid slug consisting of lowercase letters, numbers, underscores or hyphens. It cannot be entirely numeric."}})
		return
	}
	if len(name) > 64 {
		c.json(http.StatusBadRequest, map[string][]string{"name": {"Ensure this field has no more than 64 characters."}})
		return
	}
	if name == "" {
		name = slug
	}
	if st.teamBySlug[slug] != nil {
		c.json(http.StatusConflict, map[string]any{"non_field_errors": []string{"A team with this slug already exists."},
			"detail": "A team with this slug already exists."})
		return
	}
	t := s.createTeam(st, c.p, slug, name)
	if c.p.kind == kindUser && c.p.member != nil && c.p.member.role != "billing" {
		// Sentry adds the creating user to the new team as team admin.
		st.setMemberTeam(c.p.member, t, normalizeTeamRole(c.p.member.role, "admin"))
	}
	c.json(http.StatusCreated, s.wireTeam(st, t, c.p, false))
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
		c.json(http.StatusOK, s.wireTeam(st, t, c.p, strings.Contains(c.r.URL.Query().Get("expand"), "projects")))
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
			c.json(http.StatusBadRequest, map[string][]string{"slug": {"Another team is already using that slug"}})
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
	s.audit(st, c.p, "team.edit", "edited team "+t.slug, t.id, 0, map[string]any{"slug": t.slug})
	c.json(http.StatusOK, s.wireTeam(st, t, c.p, false))
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
	s.deleteTeamLocked(st, c.p, t)
	writeEmpty(c.w, http.StatusNoContent)
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
	ms := make([]*member, 0, len(t.members))
	for m := range t.members {
		if !m.pending() {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Email() != ms[j].Email() {
			return ms[i].Email() < ms[j].Email()
		}
		return ms[i].id < ms[j].id
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

func (s *Sandbox) projectTeam(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("project:write", "project:admin") {
		return
	}
	p := st.projectByIDOrSlug(c.r.PathValue("project_id_or_slug"))
	t := st.teamByIDOrSlug(c.r.PathValue("team_id_or_slug"))
	if p == nil || t == nil {
		c.detail(http.StatusNotFound, msgNotFound)
		return
	}
	if c.r.Method == http.MethodPost {
		if _, on := p.teams[t]; !on {
			p.teams[t] = struct{}{}
			t.projects[p] = struct{}{}
			s.audit(st, c.p, "project-team.add", "added team "+t.slug+" to project "+p.slug, p.id, 0,
				map[string]any{"team_slug": t.slug, "project_slug": p.slug})
			s.stats.mutation("project-team.add", p.slug+"/"+t.slug)
		}
		c.json(http.StatusCreated, s.wireProject(p))
		return
	}
	if _, on := p.teams[t]; on {
		delete(p.teams, t)
		delete(t.projects, p)
		s.audit(st, c.p, "project-team.remove", "removed team "+t.slug+" from project "+p.slug, p.id, 0,
			map[string]any{"team_slug": t.slug, "project_slug": p.slug})
		s.stats.mutation("project-team.remove", p.slug+"/"+t.slug)
	}
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
