package bamboohrtest

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve/resolvetest"
)

// Company is the simulated company domain.
const Company = "acme"

// ID is a person's id in BambooHR's format, n the person's number ("01"; see
// resolvetest.Seed).
func ID(n string) string { return "40" + n }

// New starts the BambooHR simulator.
func New(tb testing.TB) *resolvetest.Server {
	s := resolvetest.NewServer(tb, "bamboo-api-key-0123456789abcdef", serveBambooHR)
	s.URL += "/api/gateway.php/" + Company
	return s
}

func serveBambooHR(s *resolvetest.Server, w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/gateway.php/"+Company+"/v1/employees/")
	if !ok || r.Method != http.MethodGet || strings.Contains(rest, "/") {
		http.NotFound(w, r)
		return
	}
	if user, _, ok := r.BasicAuth(); !ok || user != s.Token {
		w.Header().Set("WWW-Authenticate", `Basic realm="BambooHR API"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	fields := r.URL.Query().Get("fields")
	if fields == "" {
		w.Header().Set("X-BambooHR-Error-Message", "fields is required")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	p, ok := s.Get(rest)
	if !ok {
		w.Header().Set("X-BambooHR-Error-Message", "Employee not found")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	status, hist, term := "Active", "Full-Time", "0000-00-00"
	switch p.State {
	case resolvetest.Terminated:
		status, hist, term = "Inactive", "Terminated", p.TerminationDate
	case resolvetest.Leave:
		hist = "Leave of Absence"
	}
	values := map[string]any{
		"firstName": p.FirstName, "lastName": p.LastName, "displayName": p.Name(), "workEmail": p.Email,
		"status": status, "employmentHistoryStatus": hist, "department": p.Department, "jobTitle": p.Title,
		"terminationDate": term, "division": nil,
	}
	out := map[string]any{"id": p.ID}
	for _, f := range strings.Split(fields, ",") {
		out[f] = values[f] // unknown fields: null
	}
	if !strings.Contains(r.Header.Get("Accept"), "json") {
		type field struct {
			ID    string `xml:"id,attr"`
			Value string `xml:",chardata"`
		}
		doc := struct {
			XMLName xml.Name `xml:"employee"`
			ID      string   `xml:"id,attr"`
			Fields  []field  `xml:"field"`
		}{ID: p.ID}
		for _, f := range strings.Split(fields, ",") {
			doc.Fields = append(doc.Fields, field{ID: f, Value: fmt.Sprint(values[f])})
		}
		w.Header().Set("Content-Type", "text/xml")
		_ = xml.NewEncoder(w).Encode(doc)
		return
	}
	resolvetest.WriteJSON(w, http.StatusOK, out)
}
