package gustotest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

// ID is a person's id in Gusto's format, n the person's number ("01"; see
// resolvetest.Seed).
func ID(n string) string { return "bcfc9744-0ab3-4ef3-ab0d-e728255d65" + n }

// New starts the Gusto simulator.
func New(tb testing.TB) *resolvetest.Server {
	return resolvetest.NewServer(tb, "gusto-company-access-token", serveGusto)
}

func gustoError(w http.ResponseWriter, status int, category, msg string) {
	resolvetest.WriteJSON(w, status, map[string]any{"errors": []map[string]string{{"error_key": "base", "category": category, "message": msg}}})
}

func serveGusto(s *resolvetest.Server, w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/employees/")
	if !ok || r.Method != http.MethodGet || strings.Contains(id, "/") {
		gustoError(w, http.StatusNotFound, "not_found", "Route not found")
		return
	}
	if resolvetest.Bearer(r) != s.Token {
		gustoError(w, http.StatusUnauthorized, "invalid_token", "The access token is invalid")
		return
	}
	p, ok := s.Get(id)
	if !ok {
		gustoError(w, http.StatusNotFound, "not_found", "Resource not found")
		return
	}
	terms := []map[string]any{}
	if p.State == resolvetest.Terminated {
		terms = append(terms, map[string]any{"uuid": "t-" + p.ID, "employee_uuid": p.ID, "active": true,
			"effective_date": p.TerminationDate, "run_termination_payroll": false})
	}
	resolvetest.WriteJSON(w, http.StatusOK, map[string]any{
		"uuid": p.ID, "first_name": p.FirstName, "last_name": p.LastName, "email": "personal+" + p.ID + "@example.net",
		"work_email": p.Email, "department": p.Department, "terminated": p.State == resolvetest.Terminated,
		"onboarded": p.State != resolvetest.NotStarted, "onboarding_status": map[bool]string{true: "onboarding_completed", false: "admin_onboarding_incomplete"}[p.State != resolvetest.NotStarted],
		"jobs": []map[string]any{{"uuid": "j-" + p.ID, "title": p.Title, "primary": true}}, "terminations": terms,
		"version": "db0edd04aaac4506f7edab03ac855d56",
	})
}
