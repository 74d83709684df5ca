package hibobtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

// ID is a person's id in HiBob's format, n the person's number ("01"; see
// resolvetest.Seed).
func ID(n string) string { return "33328838840177132" + n }

// New starts the HiBob simulator.
func New(tb testing.TB) *resolvetest.Server {
	return resolvetest.NewServer(tb, "SERVICE-1234:hibob-token-xyz", serveHiBob)
}

func serveHiBob(s *resolvetest.Server, w http.ResponseWriter, r *http.Request) {
	ident, ok := strings.CutPrefix(r.URL.Path, "/v1/people/")
	if !ok || ident == "" || strings.Contains(ident, "/") || (r.Method != http.MethodPost && r.Method != http.MethodGet) {
		resolvetest.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "Not Found"})
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user+":"+pass != s.Token {
		resolvetest.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized"})
		return
	}
	var fields []string
	if r.Method == http.MethodPost {
		var body struct {
			Fields        []string `json:"fields"`
			HumanReadable string   `json:"humanReadable"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			resolvetest.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "Bad Request", "message": "request body must be JSON"})
			return
		}
		fields = body.Fields
	}
	p, ok := s.Get(ident)
	if !ok {
		p, ok = s.ByEmail(ident)
	}
	if !ok {
		resolvetest.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "Not Found", "message": "Employee not found"})
		return
	}
	lifecycle, status := "employed", "Active"
	switch p.State {
	case resolvetest.Terminated:
		lifecycle, status = "terminated", "Inactive"
	case resolvetest.Leave:
		lifecycle = "leave"
	case resolvetest.NotStarted:
		lifecycle = "hired"
	}
	all := map[string]any{
		"root.id": p.ID, "root.email": p.Email, "root.displayName": p.Name(), "root.firstName": p.FirstName,
		"root.surname": p.LastName, "work.department": p.Department, "work.title": p.Title,
		"internal.lifecycleStatus": lifecycle, "internal.status": status,
	}
	if p.ManagerEmail != "" {
		all["work.reportsTo"] = map[string]string{"email": p.ManagerEmail}
	}
	if fields == nil { // legacy GET: the default field set
		for k := range all {
			fields = append(fields, k)
		}
	}
	out := map[string]any{}
	for _, f := range fields {
		v, ok := all[f]
		if !ok {
			continue // fields the service user may not read are omitted silently
		}
		cat, name, _ := strings.Cut(f, ".")
		if cat == "root" {
			out[name] = v
			continue
		}
		m, _ := out[cat].(map[string]any)
		if m == nil {
			m = map[string]any{}
			out[cat] = m
		}
		m[name] = v
	}
	resolvetest.WriteJSON(w, http.StatusOK, out)
}
