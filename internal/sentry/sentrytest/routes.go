package sentrytest

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Route patterns (Sentry's URL shapes; the OpenAPI subset's templates where it has them).
const (
	PatternOrganization  = "/api/0/organizations/{organization_id_or_slug}/"
	PatternMembers       = "/api/0/organizations/{organization_id_or_slug}/members/"
	PatternMember        = "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/"
	PatternMemberTeam    = "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/teams/{team_id_or_slug}/"
	PatternSCIMUsers     = "/api/0/organizations/{organization_id_or_slug}/scim/v2/Users"
	PatternSCIMUser      = "/api/0/organizations/{organization_id_or_slug}/scim/v2/Users/{member_id}"
	PatternSCIMGroups    = "/api/0/organizations/{organization_id_or_slug}/scim/v2/Groups"
	PatternSCIMGroup     = "/api/0/organizations/{organization_id_or_slug}/scim/v2/Groups/{team_id_or_slug}"
	PatternTeams         = "/api/0/organizations/{organization_id_or_slug}/teams/"
	PatternTeam          = "/api/0/teams/{organization_id_or_slug}/{team_id_or_slug}/"
	PatternTeamMembers   = "/api/0/teams/{organization_id_or_slug}/{team_id_or_slug}/members/"
	PatternTeamProjects  = "/api/0/teams/{organization_id_or_slug}/{team_id_or_slug}/projects/"
	PatternProjects      = "/api/0/organizations/{organization_id_or_slug}/projects/"
	PatternMyProjects    = "/api/0/projects/"
	PatternProject       = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/"
	PatternProjectTeam   = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/teams/{team_id_or_slug}/"
	PatternOrgAuthTokens = "/api/0/organizations/{organization_id_or_slug}/org-auth-tokens/"
	PatternOrgAuthToken  = "/api/0/organizations/{organization_id_or_slug}/org-auth-tokens/{token_id}/"
	PatternAuditLogs     = "/api/0/organizations/{organization_id_or_slug}/audit-logs/"
)

func (s *Sandbox) routes() {
	s.mux = http.NewServeMux()
	s.handle("GET", PatternOrganization, s.getOrganization)
	s.handle("GET", PatternMembers, s.listMembers)
	s.handle("POST", PatternMembers, s.inviteMember)
	s.handle("GET", PatternMember, s.getMember)
	s.handle("PUT", PatternMember, s.putMember)
	s.handle("DELETE", PatternMember, s.deleteMember)
	s.handle("POST", PatternMemberTeam, s.addMemberTeam)
	s.handle("PUT", PatternMemberTeam, s.putMemberTeam)
	s.handle("DELETE", PatternMemberTeam, s.removeMemberTeam)

	s.handle("GET", PatternSCIMUsers, s.scimListUsers)
	s.handle("POST", PatternSCIMUsers, s.scimCreateUser)
	s.handle("GET", PatternSCIMUser, s.scimGetUser)
	s.handle("PATCH", PatternSCIMUser, s.scimPatchUser)
	s.handle("PUT", PatternSCIMUser, s.scimPutUser)
	s.handle("DELETE", PatternSCIMUser, s.scimDeleteUser)
	s.handle("GET", PatternSCIMGroups, s.scimListGroups)
	s.handle("POST", PatternSCIMGroups, s.scimCreateGroup)
	s.handle("GET", PatternSCIMGroup, s.scimGetGroup)
	s.handle("PATCH", PatternSCIMGroup, s.scimPatchGroup)
	s.handle("DELETE", PatternSCIMGroup, s.scimDeleteGroup)

	s.handle("GET", PatternTeams, s.listTeams)
	s.handle("POST", PatternTeams, s.createTeamREST)
	s.handle("GET", PatternTeam, s.getTeam)
	s.handle("PUT", PatternTeam, s.putTeam)
	s.handle("DELETE", PatternTeam, s.deleteTeam)
	s.handle("GET", PatternTeamMembers, s.teamMembers)
	s.handle("GET", PatternTeamProjects, s.teamProjects)
	s.handle("POST", PatternTeamProjects, s.createTeamProject)
	s.handle("GET", PatternProjects, s.listProjects)
	s.handle("GET", PatternMyProjects, s.listMyProjects)
	s.handle("GET", PatternProject, s.getProject)
	s.handle("POST", PatternProjectTeam, s.projectTeam)
	s.handle("DELETE", PatternProjectTeam, s.projectTeam)

	s.handle("GET", PatternOrgAuthTokens, s.listOrgTokens)
	s.handle("POST", PatternOrgAuthTokens, s.createOrgToken)
	s.handle("GET", PatternOrgAuthToken, s.getOrgToken)
	s.handle("PUT", PatternOrgAuthToken, s.putOrgToken)
	s.handle("DELETE", PatternOrgAuthToken, s.deleteOrgToken)
	s.handle("GET", PatternAuditLogs, s.auditLogs)

	s.ctl = http.NewServeMux()
	s.ctl.HandleFunc("GET /_sandbox/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	s.ctl.HandleFunc("POST /_sandbox/stats/reset", func(w http.ResponseWriter, r *http.Request) {
		s.ResetStats()
		writeEmpty(w, http.StatusNoContent)
	})
	s.ctl.HandleFunc("GET /_sandbox/requests", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.RequestLog())
	})
	s.ctl.HandleFunc("GET /_sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	s.ctl.HandleFunc("POST /_sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, detail(err.Error()))
			return
		}
		var fs []Fault
		if t := strings.TrimSpace(string(body)); strings.HasPrefix(t, "[") {
			err = json.Unmarshal(body, &fs)
		} else {
			var f Fault
			err = json.Unmarshal(body, &f)
			fs = []Fault{f}
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, detail(err.Error()))
			return
		}
		for _, f := range fs {
			s.InjectFault(f)
		}
		writeJSON(w, http.StatusCreated, s.Faults())
	})
	s.ctl.HandleFunc("DELETE /_sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		writeEmpty(w, http.StatusNoContent)
	})
	s.ctl.HandleFunc("POST /_sandbox/invites/{member_id}/accept", func(w http.ResponseWriter, r *http.Request) {
		v, status, msg := s.acceptInvite(r.PathValue("member_id"))
		if status != http.StatusOK {
			writeJSON(w, status, detail(msg))
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	s.ctl.HandleFunc("GET /_sandbox/members", func(w http.ResponseWriter, r *http.Request) {
		if e := r.URL.Query().Get("email"); e != "" {
			v, ok := s.Member(e)
			if !ok {
				writeJSON(w, http.StatusNotFound, detail(msgNotFound))
				return
			}
			writeJSON(w, http.StatusOK, v)
			return
		}
		writeJSON(w, http.StatusOK, s.Members())
	})
	s.ctl.HandleFunc("GET /_sandbox/audit-log", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.AuditLog())
	})
	s.ctl.HandleFunc("GET /_sandbox/scim", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.SCIM())
	})
	s.ctl.HandleFunc("GET /_sandbox/org-auth-tokens", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.OrgAuthTokens())
	})
}
