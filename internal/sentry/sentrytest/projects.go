package sentrytest

import (
	"net/http"
	"sort"
	"time"
)

// wireProjectWithOrg is ProjectWithOrganizationSerializer: a project with
// its organization.
type wireProjectWithOrg struct {
	wireProject
	Organization *wireOrganization `json:"organization"`
}

// listMyProjects follows project_index.py (GET /api/0/projects/): for a
// user, the active projects of teams the user is a member of; for an org
// auth token, every project of its organization; newest first through
// DateTimePaginator (-date_added).
func (s *Sandbox) listMyProjects(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("project:read", "project:write", "project:admin") {
		return
	}
	var ps []*project
	for _, p := range st.projects {
		switch {
		case c.p.kind == kindOrgToken:
			ps = append(ps, p)
		case c.p.member != nil:
			for t := range p.teams {
				if _, on := c.p.member.teams[t]; on {
					ps = append(ps, p)
					break
				}
			}
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		if !ps[i].dateCreated.Equal(ps[j].dateCreated) {
			return ps[i].dateCreated.After(ps[j].dateCreated)
		}
		return ps[i].id > ps[j].id
	})
	lo, hi, ok := c.dateTimePage(len(ps), func(i int) time.Time { return ps[i].dateCreated })
	if !ok {
		return
	}
	org := wireOrg(st)
	out := make([]wireProjectWithOrg, 0, hi-lo)
	for _, p := range ps[lo:hi] {
		out = append(out, wireProjectWithOrg{wireProject: s.wireProject(p), Organization: org})
	}
	c.json(http.StatusOK, out)
}

// getProject follows project_details.py (get): the project with its
// organization; an unknown project is a 404.
func (s *Sandbox) getProject(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("project:read", "project:write", "project:admin") {
		return
	}
	p := st.projectByIDOrSlug(c.r.PathValue("project_id_or_slug"))
	if p == nil {
		c.detail(http.StatusNotFound, msgNotFound)
		return
	}
	c.json(http.StatusOK, wireProjectWithOrg{wireProject: s.wireProject(p), Organization: wireOrg(st)})
}

// dateTimePage is DateTimePaginator over rows sorted newest first (at(i)
// is row i's time): the cursor value is epoch milliseconds, the offset
// counts rows at that value already seen. It writes the Link header and
// returns the window.
func (c *call) dateTimePage(n int, at func(int) time.Time) (lo, hi int, ok bool) {
	limit, ok := c.parsePerPage()
	if !ok {
		return 0, 0, false
	}
	ms := func(i int) int64 { return at(i).UnixMilli() }
	var cu cursor
	if cs := c.r.URL.Query().Get("cursor"); cs != "" {
		if cu, ok = parseCursor(cs); !ok || cu.offset < 0 {
			c.detail(http.StatusBadRequest, "Invalid cursor parameter.")
			return 0, 0, false
		}
		if !cu.isPrev && cu.value > 0 {
			lo = sort.Search(n, func(i int) bool { return ms(i) <= cu.value })
		}
		lo = min(lo+cu.offset, n)
	}
	hi = min(lo+limit, n)
	next := cursor{}
	if hi > lo {
		last := ms(hi - 1)
		first := sort.Search(n, func(i int) bool { return ms(i) <= last })
		next = cursor{value: last, offset: hi - first}
	}
	prev := cursor{isPrev: true}
	if hi > lo {
		prev.value = ms(lo)
	}
	c.w.Header().Set("Link", linkEntry(c.linkBase(), "previous", prev, lo > 0)+", "+linkEntry(c.linkBase(), "next", next, hi < n))
	return lo, hi, true
}
