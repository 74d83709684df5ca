package sentrytest

import (
	"net/http"
	"sort"
	"strconv"
)

// getOrganization answers GET /api/0/organizations/{org}/ as Sentry's
// OrganizationDetailsEndpoint.get does
// (src/sentry/core/endpoints/organization_details.py), with the shapes of
// src/sentry/api/serializers/models/organization.py:
//
//   - the endpoint's permission is OrganizationPermission
//     (src/sentry/api/bases/organization.py): GET needs one of org:read,
//     org:write, org:admin, else 403;
//   - every caller allowed in gets the base OrganizationSerializer fields,
//     links {organizationUrl, regionUrl} included; "features" only with
//     include_feature_flags other than "0" (the endpoint's default is "0");
//   - a caller with org:read gets DetailedOrganizationSerializer (access,
//     role lists, the caller's role and orgRole, …), and unless detailed=0
//     also the org's teams and projects, both ordered by slug
//     (DetailedOrganizationSerializerWithProjectsAndTeams).
func (s *Sandbox) getOrganization(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("org:read", "org:write", "org:admin") {
		return
	}
	q := c.r.URL.Query()
	base := s.orgBaseURL(c.r)
	org := map[string]any{
		"id":                         strconv.FormatInt(st.orgID, 10),
		"slug":                       st.orgSlug,
		"status":                     map[string]string{"id": "active", "name": "active"},
		"name":                       orgName(st),
		"dateCreated":                ts(st.dateCreated),
		"isEarlyAdopter":             false,
		"require2FA":                 false,
		"requireEmailVerification":   false,
		"avatar":                     wireAvatar{AvatarType: "letter_avatar"},
		"allowMemberInvite":          true,
		"allowMemberProjectCreation": true,
		"allowSuperuserAccess":       true,
		// A single-host Sentry (self-hosted without customer domains) links
		// both to its own URL; sentry.io links to <slug>.sentry.io and the
		// region host (us.sentry.io, de.sentry.io).
		"links":           map[string]string{"organizationUrl": firstNonEmpty(s.opts.OrganizationURL, base), "regionUrl": firstNonEmpty(s.opts.RegionURL, base)},
		"hasAuthProvider": st.samlEnabled,
	}
	if v := q.Get("include_feature_flags"); v != "" && v != "0" {
		features := []string{"shared-issues", "sso-basic", "sso-saml2", "team-roles"}
		if st.openMembership {
			features = append(features, "open-membership")
		}
		sort.Strings(features)
		org["features"] = features
		org["extraOptions"] = map[string]any{"traces": map[string]any{"spansExtractionDate": nil, "checkSpanExtractionDate": false}}
	}
	if c.p.has("org:read") {
		s.detailedOrganization(st, c, org)
		if q.Get("detailed") != "0" {
			teams := []wireTeam{}
			for _, t := range st.sortedTeams() {
				teams = append(teams, s.wireTeam(st, t, c.p))
			}
			ps := make([]*project, 0, len(st.projects))
			for _, p := range st.projects {
				ps = append(ps, p)
			}
			sort.Slice(ps, func(i, j int) bool { return ps[i].slug < ps[j].slug })
			projects := make([]wireProject, 0, len(ps))
			for _, p := range ps {
				projects = append(projects, s.wireProject(p))
			}
			org["teams"], org["projects"] = teams, projects
		}
	}
	c.json(http.StatusOK, org)
}

// detailedOrganization adds DetailedOrganizationSerializer's fields.
func (s *Sandbox) detailedOrganization(st *state, c *call, org map[string]any) {
	access := c.p.scopes()
	org["access"] = access
	org["onboardingTasks"] = []any{}
	org["experiments"] = map[string]any{}
	org["quota"] = map[string]any{"maxRate": nil, "maxRateInterval": nil, "accountLimit": 0, "projectLimit": 100}
	org["isDefault"] = false
	org["defaultRole"] = "member"
	var available []map[string]string
	var orgRoles []wireOrgRoleDesc
	for _, r := range roleTable() {
		available = append(available, map[string]string{"id": r.id, "name": r.name})
		orgRoles = append(orgRoles, wireOrgRoleDesc{ID: r.id, Name: r.name, Desc: r.desc, Scopes: r.scopes,
			Allowed: true, IsAllowed: true, IsRetired: r.retired, IsTeamRolesAllowed: r.teamRolesAllowed,
			IsGlobal: r.id != "member" && r.id != "billing", IsGlobalSnake: r.id != "member" && r.id != "billing",
			MinimumTeamRole: r.minimumTeamRole})
	}
	var teamRoles []wireTeamRoleDesc
	for _, r := range teamRoleTable() {
		var minFor *string
		if r.isMinimumRoleFor != "" {
			v := r.isMinimumRoleFor
			minFor = &v
		}
		teamRoles = append(teamRoles, wireTeamRoleDesc{ID: r.id, Name: r.name, Desc: r.desc, Scopes: r.scopes,
			Allowed: true, IsAllowed: true, IsTeamRolesAllowed: true, IsMinimumRoleFor: minFor})
	}
	org["availableRoles"] = available
	org["orgRoleList"] = orgRoles
	org["teamRoleList"] = teamRoles
	for k, v := range map[string]any{
		"openMembership": st.openMembership, "allowSharedIssues": true, "enhancedPrivacy": false,
		"dataScrubber": false, "dataScrubberDefaults": false, "sensitiveFields": []string{}, "safeFields": []string{},
		"storeCrashReports": 0, "attachmentsRole": "member", "debugFilesRole": "admin", "eventsMemberAdmin": true,
		"alertsMemberWrite": true, "scrubIPAddresses": false, "scrapeJavaScript": true, "allowJoinRequests": true,
		"relayPiiConfig": nil, "codecovAccess": false, "hideAiFeatures": false, "githubPRBot": true,
		"githubOpenPRBot": true, "githubNudgeInvite": true, "genAIConsent": false, "aggregatedDataConsent": false,
		"issueAlertsThreadFlag": true, "metricAlertsThreadFlag": true, "rollbackEnabled": true, "streamlineOnly": nil,
		"trustedRelays": []any{}, "requiresSso": false, "pendingAccessRequests": 0, "isDynamicallySampled": false,
	} {
		org[k] = v
	}
	// access.role is the caller's org role; integration tokens have none.
	if c.p.member != nil {
		org["role"] = c.p.member.role
		org["orgRole"] = c.p.member.role
	}
}

// scopes lists the caller's effective scopes (Access.scopes), sorted.
func (p *principal) scopes() []string {
	seen := map[string]bool{}
	out := []string{}
	add := func(sc string) {
		if !seen[sc] && p.has(sc) {
			seen[sc] = true
			out = append(out, sc)
		}
	}
	for _, r := range roleTable() {
		for _, sc := range r.scopes {
			add(sc)
		}
	}
	for _, sc := range []string{"org:ci", "team:admin", "member:admin"} {
		add(sc)
	}
	sort.Strings(out)
	return out
}

// orgBaseURL is the sandbox's own URL as the request reached it.
func (s *Sandbox) orgBaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func orgName(st *state) string {
	if st.orgName != "" {
		return st.orgName
	}
	return st.orgSlug
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
