// Package resolvetest simulates the employee-read APIs of the HR providers the
// resolve package calls (BambooHR, HiBob, Gusto, Personio, Deel, Rippling), in
// the manner of httptest: real paths, each provider's auth scheme, its JSON
// shapes, 401 for bad credentials and 404 for unknown ids, as their public API
// documentation describes them. It keeps its own wire shapes and never imports
// resolve, so a shared struct cannot hide a contract bug.
package resolvetest

import (
	"encoding/json"
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
	// Personio access tokens issued and still valid.
	issued map[string]bool
}

func newServer(tb testing.TB, token string, route func(s *Server, w http.ResponseWriter, r *http.Request)) *Server {
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
			writeJSON(rec, injected, map[string]string{"error": "injected failure"})
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

func (s *Server) person(id string) (Person, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.people[id]
	return p, ok
}

func (s *Server) byEmail(email string) (Person, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.people {
		if strings.EqualFold(p.Email, email) {
			return p, true
		}
	}
	return Person{}, false
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func bearer(r *http.Request) string {
	t, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return t
}

func (p Person) name() string { return strings.TrimSpace(p.FirstName + " " + p.LastName) }
