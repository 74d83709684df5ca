package resolvetest

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ---- BambooHR: GET /api/gateway.php/{companyDomain}/v1/employees/{id}?fields=…
// Basic auth: API key as user, any password. JSON only when Accept asks for it
// (XML otherwise). 404 with X-BambooHR-Error-Message for an unknown employee;
// 401 for a bad key. Requested fields the employee lacks come back null.

// BambooHRCompany is the simulated company domain.
const BambooHRCompany = "acme"

// NewBambooHR starts the BambooHR simulator.
func NewBambooHR(tb testing.TB) *Server {
	s := newServer(tb, "bamboo-api-key-0123456789abcdef", serveBambooHR)
	s.URL += "/api/gateway.php/" + BambooHRCompany
	return s
}

func serveBambooHR(s *Server, w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/gateway.php/"+BambooHRCompany+"/v1/employees/")
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
	p, ok := s.person(rest)
	if !ok {
		w.Header().Set("X-BambooHR-Error-Message", "Employee not found")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	status, hist, term := "Active", "Full-Time", "0000-00-00"
	switch p.State {
	case Terminated:
		status, hist, term = "Inactive", "Terminated", p.TerminationDate
	case Leave:
		hist = "Leave of Absence"
	}
	values := map[string]any{
		"firstName": p.FirstName, "lastName": p.LastName, "displayName": p.name(), "workEmail": p.Email,
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
	writeJSON(w, http.StatusOK, out)
}

// ---- HiBob: POST /v1/people/{identifier} {"fields": [...], "humanReadable": …}
// (and the deprecated GET /v1/people/{identifier}); identifier is the employee id
// or email. Basic auth with service user id and token. Only requested fields are
// returned, nested by category.

// NewHiBob starts the HiBob simulator.
func NewHiBob(tb testing.TB) *Server {
	return newServer(tb, "SERVICE-1234:hibob-token-xyz", serveHiBob)
}

func serveHiBob(s *Server, w http.ResponseWriter, r *http.Request) {
	ident, ok := strings.CutPrefix(r.URL.Path, "/v1/people/")
	if !ok || ident == "" || strings.Contains(ident, "/") || (r.Method != http.MethodPost && r.Method != http.MethodGet) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not Found"})
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user+":"+pass != s.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized"})
		return
	}
	var fields []string
	if r.Method == http.MethodPost {
		var body struct {
			Fields        []string `json:"fields"`
			HumanReadable string   `json:"humanReadable"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Bad Request", "message": "request body must be JSON"})
			return
		}
		fields = body.Fields
	}
	p, ok := s.person(ident)
	if !ok {
		p, ok = s.byEmail(ident)
	}
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not Found", "message": "Employee not found"})
		return
	}
	lifecycle, status := "employed", "Active"
	switch p.State {
	case Terminated:
		lifecycle, status = "terminated", "Inactive"
	case Leave:
		lifecycle = "leave"
	case NotStarted:
		lifecycle = "hired"
	}
	all := map[string]any{
		"root.id": p.ID, "root.email": p.Email, "root.displayName": p.name(), "root.firstName": p.FirstName,
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
	writeJSON(w, http.StatusOK, out)
}

// ---- Gusto: GET /v1/employees/{employee_uuid}, Bearer token, errors as
// {"errors": [{"error_key", "category", "message"}]}.

// NewGusto starts the Gusto simulator.
func NewGusto(tb testing.TB) *Server { return newServer(tb, "gusto-company-access-token", serveGusto) }

func gustoError(w http.ResponseWriter, status int, category, msg string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{"error_key": "base", "category": category, "message": msg}}})
}

func serveGusto(s *Server, w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/employees/")
	if !ok || r.Method != http.MethodGet || strings.Contains(id, "/") {
		gustoError(w, http.StatusNotFound, "not_found", "Route not found")
		return
	}
	if bearer(r) != s.Token {
		gustoError(w, http.StatusUnauthorized, "invalid_token", "The access token is invalid")
		return
	}
	p, ok := s.person(id)
	if !ok {
		gustoError(w, http.StatusNotFound, "not_found", "Resource not found")
		return
	}
	terms := []map[string]any{}
	if p.State == Terminated {
		terms = append(terms, map[string]any{"uuid": "t-" + p.ID, "employee_uuid": p.ID, "active": true,
			"effective_date": p.TerminationDate, "run_termination_payroll": false})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"uuid": p.ID, "first_name": p.FirstName, "last_name": p.LastName, "email": "personal+" + p.ID + "@example.net",
		"work_email": p.Email, "department": p.Department, "terminated": p.State == Terminated,
		"onboarded": p.State != NotStarted, "onboarding_status": map[bool]string{true: "onboarding_completed", false: "admin_onboarding_incomplete"}[p.State != NotStarted],
		"jobs": []map[string]any{{"uuid": "j-" + p.ID, "title": p.Title, "primary": true}}, "terminations": terms,
		"version": "db0edd04aaac4506f7edab03ac855d56",
	})
}

// ---- Personio: POST /v2/auth/token (client credentials, form-encoded), then
// GET /v2/persons/{id} and GET /v2/persons/{id}/employments with the bearer token.

// Personio's simulated client credentials; Token is "<id>:<secret>".
const (
	PersonioClientID     = "papi-client-id"
	PersonioClientSecret = "papi-client-secret"
)

// NewPersonio starts the Personio simulator.
func NewPersonio(tb testing.TB) *Server {
	return newServer(tb, PersonioClientID+":"+PersonioClientSecret, servePersonio)
}

// ExpireTokens revokes every access token issued so far (Personio answers 401).
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued = map[string]bool{}
}

func personioError(w http.ResponseWriter, status int, title string) {
	writeJSON(w, status, map[string]any{"personio_trace_id": "trace-1", "timestamp": time.Now().UTC().Format(time.RFC3339),
		"errors": []map[string]string{{"title": title, "detail": title}}})
}

func servePersonio(s *Server, w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/auth/token" {
		if r.Method != http.MethodPost || r.ParseForm() != nil {
			personioError(w, http.StatusBadRequest, "Bad request")
			return
		}
		if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != PersonioClientID ||
			r.PostForm.Get("client_secret") != PersonioClientSecret {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Client authentication failed"})
			return
		}
		s.mu.Lock()
		tok := fmt.Sprintf("papi-access-%d", len(s.issued)+len(s.reqs))
		s.issued[tok] = true
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 86400, "scope": "personio:persons:read"})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/persons/")
	if !ok || r.Method != http.MethodGet {
		personioError(w, http.StatusNotFound, "Not found")
		return
	}
	s.mu.Lock()
	valid := s.issued[bearer(r)]
	s.mu.Unlock()
	if !valid {
		personioError(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	id, sub, _ := strings.Cut(rest, "/")
	p, ok := s.person(id)
	if !ok || (sub != "" && sub != "employments") {
		personioError(w, http.StatusNotFound, "Not found")
		return
	}
	status := map[State]string{Active: "ACTIVE", Terminated: "INACTIVE", Leave: "LEAVE", NotStarted: "ONBOARDING"}[p.State]
	self := s.URL + "/v2/persons/" + p.ID
	if sub == "" {
		writeJSON(w, http.StatusOK, map[string]any{"id": p.ID, "first_name": p.FirstName, "last_name": p.LastName,
			"preferred_name": "", "email": p.Email, "status": status, "employments": []map[string]string{{"id": "emp-" + p.ID}},
			"_meta": map[string]any{"links": map[string]any{"self": map[string]string{"href": self}}}})
		return
	}
	emp := map[string]any{"id": "emp-" + p.ID, "person": map[string]string{"id": p.ID}, "status": status,
		"start_date": "2024-01-01", "position": map[string]string{"title": p.Title},
		"org_units": []map[string]string{{"id": "dept-" + strings.ToLower(p.Department), "type": "DEPARTMENT"}}}
	if p.State == Terminated {
		emp["termination_date"] = p.TerminationDate
	}
	old := map[string]any{"id": "emp-old-" + p.ID, "person": map[string]string{"id": p.ID}, "status": "INACTIVE",
		"start_date": "2019-05-01", "position": map[string]string{"title": "Intern"}}
	writeJSON(w, http.StatusOK, map[string]any{"_data": []any{old, emp}, "_meta": map[string]any{"links": map[string]any{}}})
}

// ---- Deel: GET /rest/v2/people/{worker_id} and GET /rest/v2/contracts/{id},
// Bearer token, answers wrapped in {"data": …}.

// NewDeel starts the Deel simulator.
func NewDeel(tb testing.TB) *Server { return newServer(tb, "deel-api-token", serveDeel) }

func serveDeel(s *Server, w http.ResponseWriter, r *http.Request) {
	notFound := func() {
		writeJSON(w, http.StatusNotFound, map[string]any{"errors": []map[string]string{{"message": "Not found"}}})
	}
	if r.Method != http.MethodGet {
		notFound()
		return
	}
	if bearer(r) != s.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"errors": []map[string]string{{"message": "Unauthorized"}}})
		return
	}
	hiring := map[State]string{Active: "active", Terminated: "terminated", Leave: "active", NotStarted: "onboarding"}
	if id, ok := strings.CutPrefix(r.URL.Path, "/rest/v2/people/"); ok {
		p, ok := s.person(id)
		if !ok {
			notFound()
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
			"id": p.ID, "first_name": p.FirstName, "last_name": p.LastName, "full_name": p.name(),
			"emails":        []map[string]string{{"type": "personal", "value": "home-" + p.ID + "@example.net"}, {"type": "work", "value": p.Email}},
			"hiring_status": hiring[p.State], "job_title": p.Title, "department": map[string]string{"name": p.Department},
		}})
		return
	}
	if cid, ok := strings.CutPrefix(r.URL.Path, "/rest/v2/contracts/"); ok {
		s.mu.Lock()
		var found *Person
		for _, p := range s.people {
			if p.ContractID == cid {
				found = &p
				break
			}
		}
		s.mu.Unlock()
		if found == nil {
			notFound()
			return
		}
		status := map[State]string{Active: "in_progress", Terminated: "terminated", Leave: "in_progress", NotStarted: "waiting_for_contractor_sign"}[found.State]
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"id": cid, "status": status,
			"worker": map[string]string{"id": found.ID, "email": found.Email, "full_name": found.name()}}})
		return
	}
	notFound()
}

// ---- Rippling: GET /platform/api/employees/{id}, Bearer token, Django REST
// style errors {"detail": …}. Guaranteed fields: id, personalEmail, roleState.

// NewRippling starts the Rippling simulator.
func NewRippling(tb testing.TB) *Server { return newServer(tb, "rippling-api-token", serveRippling) }

func serveRippling(s *Server, w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/platform/api/employees/")
	if !ok || r.Method != http.MethodGet || strings.Contains(id, "/") {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not found."})
		return
	}
	if bearer(r) != s.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Authentication credentials were not provided."})
		return
	}
	p, ok := s.person(id)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not found."})
		return
	}
	role := map[State]string{Active: "ACTIVE", Terminated: "TERMINATED", Leave: "ACTIVE", NotStarted: "HIRED"}[p.State]
	writeJSON(w, http.StatusOK, map[string]any{"id": p.ID, "name": p.name(), "firstName": p.FirstName, "lastName": p.LastName,
		"workEmail": p.Email, "personalEmail": "home-" + p.ID + "@example.net", "roleState": role,
		"department": p.Department, "title": p.Title})
}
