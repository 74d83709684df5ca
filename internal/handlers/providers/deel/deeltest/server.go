package deeltest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

// ID is a person's id in Deel's format, n the person's number ("01"; see
// resolvetest.Seed).
func ID(n string) string { return "7b1e0000-0000-4000-8000-0000000000" + n }

// New starts the Deel simulator.
func New(tb testing.TB) *resolvetest.Server {
	return resolvetest.NewServer(tb, "deel-api-token", serveDeel)
}

func serveDeel(s *resolvetest.Server, w http.ResponseWriter, r *http.Request) {
	notFound := func() {
		resolvetest.WriteJSON(w, http.StatusNotFound, map[string]any{"errors": []map[string]string{{"message": "Not found"}}})
	}
	if r.Method != http.MethodGet {
		notFound()
		return
	}
	if resolvetest.Bearer(r) != s.Token {
		resolvetest.WriteJSON(w, http.StatusUnauthorized, map[string]any{"errors": []map[string]string{{"message": "Unauthorized"}}})
		return
	}
	hiring := map[resolvetest.State]string{resolvetest.Active: "active", resolvetest.Terminated: "terminated", resolvetest.Leave: "active", resolvetest.NotStarted: "onboarding"}
	if id, ok := strings.CutPrefix(r.URL.Path, "/rest/v2/people/"); ok {
		p, ok := s.Get(id)
		if !ok {
			notFound()
			return
		}
		resolvetest.WriteJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
			"id": p.ID, "first_name": p.FirstName, "last_name": p.LastName, "full_name": p.Name(),
			"emails":        []map[string]string{{"type": "personal", "value": "home-" + p.ID + "@example.net"}, {"type": "work", "value": p.Email}},
			"hiring_status": hiring[p.State], "job_title": p.Title, "department": map[string]string{"name": p.Department},
		}})
		return
	}
	if cid, ok := strings.CutPrefix(r.URL.Path, "/rest/v2/contracts/"); ok {
		found, ok := s.Find(func(p resolvetest.Person) bool { return p.ContractID == cid })
		if !ok {
			notFound()
			return
		}
		status := map[resolvetest.State]string{resolvetest.Active: "in_progress", resolvetest.Terminated: "terminated", resolvetest.Leave: "in_progress", resolvetest.NotStarted: "waiting_for_contractor_sign"}[found.State]
		resolvetest.WriteJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"id": cid, "status": status,
			"worker": map[string]string{"id": found.ID, "email": found.Email, "full_name": found.Name()}}})
		return
	}
	notFound()
}
