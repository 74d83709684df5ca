package sentrytest

import (
	"encoding/json"
	"fmt"
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
	b, err := json.Marshal(wireProjectWithOrg{wireProject: s.wireProject(p), Organization: wireOrg(st)})
	if err != nil {
		c.detail(http.StatusInternalServerError, err.Error())
		return
	}
	out := detailedProjectDefaults(p)
	if err := json.Unmarshal(b, &out); err != nil {
		c.detail(http.StatusInternalServerError, err.Error())
		return
	}
	c.json(http.StatusOK, out)
}

// detailedProjectDefaults are the fields DetailedProjectSerializer
// (src/sentry/api/serializers/models/project.py) adds to a project's details,
// with the values a new project has: project options at their defaults
// (src/sentry/projectoptions/defaults.py), no events, no releases, no
// insights data. The sandbox models none of these settings; they are here so
// clients that decode the details (go-sentry, Terraform) see Sentry's shape.
func detailedProjectDefaults(p *project) map[string]any {
	token := fmt.Sprintf("%032x", uint64(p.id)*0x9e3779b97f4a7c15)
	if len(token) > 32 {
		token = token[len(token)-32:]
	}
	m := map[string]any{
		"allowedDomains": []string{"*"}, "autofixAutomationTuning": "off", "builtinSymbolSources": []string{},
		"color": "#3f70bf", "dataScrubber": true, "dataScrubberDefaults": true, "debugFilesRole": nil,
		"defaultEnvironment": nil, "derivedGroupingEnhancements": "", "digestsMaxDelay": 1800, "digestsMinDelay": 300,
		"dynamicSamplingBiases": []any{}, "enableAutoReleaseCreation": true, "fingerprintingRules": "",
		"groupingConfig": "newstyle:2023-01-11", "groupingEnhancements": "",
		"highlightContext": map[string]any{}, "highlightPreset": map[string]any{"context": map[string]any{}, "tags": []string{}},
		"highlightTags": []string{}, "isDynamicallySampled": false, "isInternal": false, "isPublic": false,
		"latestRelease": nil, "options": map[string]any{"sentry:scrub_data": true, "sentry:scrub_defaults": true,
			"sentry:scrape_javascript": true, "sentry:resolve_age": 0, "sentry:token": token},
		"platforms": []string{}, "processingIssues": 0, "relayPiiConfig": nil, "resolveAge": 0, "safeFields": []string{},
		"scmSourceContextEnabled": false, "scrapeJavaScript": true, "scrubIPAddresses": false,
		"secondaryGroupingConfig": nil, "secondaryGroupingExpiry": 0, "securityToken": token,
		"securityTokenHeader": nil, "seerNightshiftTweaks": nil, "seerScannerAutomation": true, "sensitiveFields": []string{},
		"status": "active", "storeCrashReports": nil, "subjectPrefix": "", "subjectTemplate": "$shortID - $title",
		"symbolSources": "[]", "tempestFetchScreenshots": false, "verifySSL": false,
	}
	for _, k := range []string{"hasFeedbacks", "hasFlags", "hasInsightsAgentMonitoring", "hasInsightsAppStart", "hasInsightsAssets",
		"hasInsightsCaches", "hasInsightsDb", "hasInsightsHttp", "hasInsightsMCP", "hasInsightsQueues", "hasInsightsScreenLoad",
		"hasInsightsVitals", "hasLogs", "hasMinifiedStackTrace", "hasMonitors", "hasNewFeedbacks", "hasProfiles", "hasReplays",
		"hasSessions", "hasTraceMetrics"} {
		m[k] = false
	}
	return m
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
