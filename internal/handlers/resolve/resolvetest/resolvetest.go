package resolvetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// State is a person's employment state, rendered in each provider's vocabulary.
type State string

// The states the simulators know.
const (
	Active     State = "active"
	Terminated State = "terminated"
	Leave      State = "leave"
	NotStarted State = "not_started" // hired, start date ahead
)

// Person is one employee of the simulated company.
type Person struct {
	ID           string
	Email        string // work email
	FirstName    string
	LastName     string
	Department   string
	Title        string
	ManagerEmail string
	State        State
	// TerminationDate (YYYY-MM-DD), for terminated people.
	TerminationDate string
	// ContractID is a Deel contract naming this worker.
	ContractID string
}

// Seed adds the standard company the readers' tests run against, idOf giving
// each person's id in the provider's format: 01 active (with a manager and a
// Deel contract c-01), 02 terminated on 2026-11-27 (contract c-02), 03 on
// leave, 04 hired with a start date ahead.
func Seed(s *Server, idOf func(n string) string) {
	s.Add(Person{ID: idOf("01"), Email: "jane@acme.com", FirstName: "Jane", LastName: "Doe",
		Department: "Payments", Title: "Engineer", ManagerEmail: "lead@acme.com", State: Active, ContractID: "c-01"})
	s.Add(Person{ID: idOf("02"), Email: "leaver@acme.com", FirstName: "Lee", LastName: "Ver",
		Department: "Sales", Title: "AE", State: Terminated, TerminationDate: "2026-11-27", ContractID: "c-02"})
	s.Add(Person{ID: idOf("03"), Email: "away@acme.com", FirstName: "A", LastName: "Way",
		Department: "Ops", Title: "SRE", State: Leave})
	s.Add(Person{ID: idOf("04"), Email: "soon@acme.com", FirstName: "S", LastName: "Oon",
		Department: "Ops", Title: "SRE", State: NotStarted})
}

// Request is one request the simulator served.
type Request struct {
	Method, Path, Query string
	Status              int
}

// Server is one provider's simulated API.
type Server struct {
	// URL is the base URL to give the resolver (JML_SOURCE_<NAME>_API_URL).
	URL string
	// Token is the credential to give the resolver (JML_SOURCE_<NAME>_API_TOKEN),
	// in the provider's format.
	Token string

	srv    *httptest.Server
	mu     sync.Mutex
	people map[string]Person
	reqs   []Request
	fail   []int
	// Access tokens issued and still valid (IssueToken).
	issued map[string]bool
}

// NewServer starts a simulated provider API on a loopback httptest.Server: token
// is the credential it accepts, route serves one request (after the failures
// FailNext injected); every request is recorded.
func NewServer(tb testing.TB, token string, route func(s *Server, w http.ResponseWriter, r *http.Request)) *Server {
	tb.Helper()
	s := &Server{Token: token, people: map[string]Person{}, issued: map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		s.mu.Lock()
		var injected int
		if len(s.fail) > 0 {
			injected, s.fail = s.fail[0], s.fail[1:]
		}
		s.mu.Unlock()
		if injected != 0 {
			WriteJSON(rec, injected, map[string]string{"error": "injected failure"})
		} else {
			route(s, rec, r)
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: rec.status})
		s.mu.Unlock()
	}))
	tb.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	return s
}

// Add seeds (or replaces) a person.
func (s *Server) Add(p Person) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.people[p.ID] = p
}

// FailNext makes the next len(statuses) requests answer those statuses.
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, statuses...)
}

// Requests returns the requests served so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Get returns the person with the provider id.
func (s *Server) Get(id string) (Person, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.people[id]
	return p, ok
}

// ByEmail returns the person with the work email (case-insensitive).
func (s *Server) ByEmail(email string) (Person, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.people {
		if strings.EqualFold(p.Email, email) {
			return p, true
		}
	}
	return Person{}, false
}

// Find returns a person match accepts.
func (s *Server) Find(match func(Person) bool) (Person, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.people {
		if match(p) {
			return p, true
		}
	}
	return Person{}, false
}

// IssueToken records and returns a new access token: prefix and a number (for
// providers whose API hands out access tokens: Personio).
func (s *Server) IssueToken(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := fmt.Sprintf("%s%d", prefix, len(s.issued)+len(s.reqs))
	s.issued[tok] = true
	return tok
}

// TokenIssued reports whether tok was issued and not expired since.
func (s *Server) TokenIssued(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[tok]
}

// ExpireTokens revokes every access token issued so far (Personio answers 401).
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued = map[string]bool{}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Bearer returns the request's bearer token ("" when there is none).
func Bearer(r *http.Request) string {
	t, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return t
}

// Name is the first and the last name.
func (p Person) Name() string { return strings.TrimSpace(p.FirstName + " " + p.LastName) }
