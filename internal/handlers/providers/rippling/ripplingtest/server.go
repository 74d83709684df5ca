package ripplingtest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

// ID is a person's id in Rippling's format, n the person's number ("01"; see
// resolvetest.Seed).
func ID(n string) string { return "656992816f26d6caea0007" + n }

// New starts the Rippling simulator.
func New(tb testing.TB) *resolvetest.Server {
	return resolvetest.NewServer(tb, "rippling-api-token", serveRippling)
}

func serveRippling(s *resolvetest.Server, w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/platform/api/employees/")
	if !ok || r.Method != http.MethodGet || strings.Contains(id, "/") {
		resolvetest.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Not found."})
		return
	}
	if resolvetest.Bearer(r) != s.Token {
		resolvetest.WriteJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Authentication credentials were not provided."})
		return
	}
	p, ok := s.Get(id)
	if !ok {
		resolvetest.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Not found."})
		return
	}
	role := map[resolvetest.State]string{resolvetest.Active: "ACTIVE", resolvetest.Terminated: "TERMINATED", resolvetest.Leave: "ACTIVE", resolvetest.NotStarted: "HIRED"}[p.State]
	resolvetest.WriteJSON(w, http.StatusOK, map[string]any{"id": p.ID, "name": p.Name(), "firstName": p.FirstName, "lastName": p.LastName,
		"workEmail": p.Email, "personalEmail": "home-" + p.ID + "@example.net", "roleState": role,
		"department": p.Department, "title": p.Title})
}
