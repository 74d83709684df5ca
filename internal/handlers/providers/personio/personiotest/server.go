package personiotest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

// The simulated client credentials; Token is "<id>:<secret>".
const (
	ClientID     = "papi-client-id"
	ClientSecret = "papi-client-secret"
)

// ID is a person's id in Personio's format, n the person's number ("01"; see
// resolvetest.Seed).
func ID(n string) string { return "42" + n }

// New starts the Personio simulator.
func New(tb testing.TB) *resolvetest.Server {
	return resolvetest.NewServer(tb, ClientID+":"+ClientSecret, servePersonio)
}

func personioError(w http.ResponseWriter, status int, title string) {
	resolvetest.WriteJSON(w, status, map[string]any{"personio_trace_id": "trace-1", "timestamp": time.Now().UTC().Format(time.RFC3339),
		"errors": []map[string]string{{"title": title, "detail": title}}})
}

func servePersonio(s *resolvetest.Server, w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/auth/token" {
		if r.Method != http.MethodPost || r.ParseForm() != nil {
			personioError(w, http.StatusBadRequest, "Bad request")
			return
		}
		if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != ClientID ||
			r.PostForm.Get("client_secret") != ClientSecret {
			resolvetest.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Client authentication failed"})
			return
		}
		tok := s.IssueToken("papi-access-")
		resolvetest.WriteJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 86400, "scope": "personio:persons:read"})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/persons/")
	if !ok || r.Method != http.MethodGet {
		personioError(w, http.StatusNotFound, "Not found")
		return
	}
	valid := s.TokenIssued(resolvetest.Bearer(r))
	if !valid {
		personioError(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	id, sub, _ := strings.Cut(rest, "/")
	p, ok := s.Get(id)
	if !ok || (sub != "" && sub != "employments") {
		personioError(w, http.StatusNotFound, "Not found")
		return
	}
	status := map[resolvetest.State]string{resolvetest.Active: "ACTIVE", resolvetest.Terminated: "INACTIVE", resolvetest.Leave: "LEAVE", resolvetest.NotStarted: "ONBOARDING"}[p.State]
	self := s.URL + "/v2/persons/" + p.ID
	if sub == "" {
		resolvetest.WriteJSON(w, http.StatusOK, map[string]any{"id": p.ID, "first_name": p.FirstName, "last_name": p.LastName,
			"preferred_name": "", "email": p.Email, "status": status, "employments": []map[string]string{{"id": "emp-" + p.ID}},
			"_meta": map[string]any{"links": map[string]any{"self": map[string]string{"href": self}}}})
		return
	}
	emp := map[string]any{"id": "emp-" + p.ID, "person": map[string]string{"id": p.ID}, "status": status,
		"start_date": "2024-01-01", "position": map[string]string{"title": p.Title},
		"org_units": []map[string]string{{"id": "dept-" + strings.ToLower(p.Department), "type": "DEPARTMENT"}}}
	if p.State == resolvetest.Terminated {
		emp["termination_date"] = p.TerminationDate
	}
	old := map[string]any{"id": "emp-old-" + p.ID, "person": map[string]string{"id": p.ID}, "status": "INACTIVE",
		"start_date": "2019-05-01", "position": map[string]string{"title": "Intern"}}
	resolvetest.WriteJSON(w, http.StatusOK, map[string]any{"_data": []any{old, emp}, "_meta": map[string]any{"links": map[string]any{}}})
}
