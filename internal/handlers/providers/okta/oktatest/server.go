package oktatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// User is the simulator's user record (its own wire struct).
type User struct {
	ID      string            `json:"id"`
	Status  string            `json:"status"`
	Profile map[string]string `json:"profile"`
}

// Group is the simulator's group record.
type Group struct {
	ID   string
	Name string
	Type string // OKTA_GROUP (default), APP_GROUP, BUILT_IN
}

// Server simulates an Okta org's API on a loopback httptest.Server.
type Server struct {
	*httptest.Server
	Token string

	mu       sync.Mutex
	users    map[string]User
	groups   map[string]Group
	members  map[string][]string // user id → group ids, in insertion order
	logs     []json.RawMessage   // ascending by published
	logTimes []time.Time
	faults   []fault
	requests []string
	now      func() time.Time
}

type fault struct {
	path   string
	status int
	n      int
}

// NewServer starts a simulator; it is closed with the test. Its API token is Token.
func NewServer(tb testing.TB) *Server {
	s := &Server{
		Token: "00test-okta-api-token", users: map[string]User{}, groups: map[string]Group{},
		members: map[string][]string{}, now: time.Now,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/users/{id}", s.getUser)
	mux.HandleFunc("GET /api/v1/users/{id}/groups", s.userGroups)
	mux.HandleFunc("GET /api/v1/logs", s.listLogs)
	s.Server = httptest.NewServer(s.middleware(mux))
	tb.Cleanup(s.Close)
	return s
}

// AddUser stores a user (status defaults to ACTIVE).
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.Status == "" {
		u.Status = "ACTIVE"
	}
	s.users[u.ID] = u
}

// AddGroup stores a group and makes the users members of it.
func (s *Server) AddGroup(g Group, userIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.Type == "" {
		g.Type = "OKTA_GROUP"
	}
	s.groups[g.ID] = g
	for _, u := range userIDs {
		if !slices.Contains(s.members[u], g.ID) {
			s.members[u] = append(s.members[u], g.ID)
		}
	}
}

// AddLogEvent appends a System Log event (raw LogEvent JSON with a published time).
func (s *Server) AddLogEvent(raw string) {
	var head struct {
		Published time.Time `json:"published"`
	}
	if err := json.Unmarshal([]byte(raw), &head); err != nil {
		panic("oktatest: log event needs an RFC 3339 published: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Insert after every event published at or before this one: stable order.
	i, _ := slices.BinarySearchFunc(s.logTimes, head.Published, func(a, b time.Time) int {
		if a.After(b) {
			return 1
		}
		return -1
	})
	s.logTimes = slices.Insert(s.logTimes, i, head.Published)
	s.logs = slices.Insert(s.logs, i, json.RawMessage(raw))
}

// FailNext makes the next n requests whose path starts with prefix answer status.
func (s *Server) FailNext(prefix string, status, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{path: prefix, status: status, n: n})
}

// Requests returns "METHOD path?query" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func writeErr(w http.ResponseWriter, status int, code, summary string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errorCode": code, "errorSummary": summary, "errorLink": code,
		"errorId": "oaeSimulated" + strconv.Itoa(status), "errorCauses": []any{},
	})
}

func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
		var hit *fault
		for i := range s.faults {
			if s.faults[i].n > 0 && strings.HasPrefix(r.URL.Path, s.faults[i].path) {
				s.faults[i].n--
				hit = &s.faults[i]
				break
			}
		}
		reset := s.now().Add(time.Minute).Unix()
		s.mu.Unlock()
		w.Header().Set("X-Rate-Limit-Limit", "600")
		w.Header().Set("X-Rate-Limit-Reset", strconv.FormatInt(reset, 10))
		if r.Header.Get("Authorization") != "SSWS "+s.Token {
			writeErr(w, http.StatusUnauthorized, "E0000011", "Invalid token provided")
			return
		}
		if hit != nil {
			switch hit.status {
			case http.StatusTooManyRequests:
				w.Header().Set("X-Rate-Limit-Remaining", "0")
				writeErr(w, hit.status, "E0000047", "API call exceeded rate limit due to too many requests.")
			default:
				writeErr(w, hit.status, "E0000009", "Internal Server Error")
			}
			return
		}
		w.Header().Set("X-Rate-Limit-Remaining", "599")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) findUser(id string) (User, bool) {
	if u, ok := s.users[id]; ok {
		return u, true
	}
	for _, u := range s.users {
		if strings.EqualFold(u.Profile["login"], id) {
			return u, true
		}
	}
	return User{}, false
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	u, ok := s.findUser(r.PathValue("id"))
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, "E0000007", "Not found: Resource not found: "+r.PathValue("id")+" (User)")
		return
	}
	writeJSON(w, map[string]any{
		"id": u.ID, "status": u.Status, "created": "2026-01-01T00:00:00.000Z", "lastUpdated": "2026-01-02T00:00:00.000Z",
		"profile": u.Profile, "type": map[string]any{"id": "otyDefault"},
		"_links": map[string]any{"self": map[string]any{"href": s.URL + "/api/v1/users/" + u.ID}},
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func limitParam(r *http.Request, def, max int) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, false
	}
	return min(n, max), true
}

// userGroups pages with limit and an opaque after cursor (the last group id).
func (s *Server) userGroups(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(r, 10000, 10000)
	if !ok {
		writeErr(w, http.StatusBadRequest, "E0000001", "Api validation failed: limit")
		return
	}
	s.mu.Lock()
	u, found := s.findUser(r.PathValue("id"))
	var ids []string
	if found {
		ids = append(ids, s.members[u.ID]...)
	}
	groups := s.groups
	s.mu.Unlock()
	if !found {
		writeErr(w, http.StatusNotFound, "E0000007", "Not found: Resource not found: "+r.PathValue("id")+" (User)")
		return
	}
	start := 0
	if after := r.URL.Query().Get("after"); after != "" {
		start = slices.Index(ids, after) + 1
	}
	end := min(len(ids), start+limit)
	out := []any{}
	for _, id := range ids[start:end] {
		g := groups[id]
		out = append(out, map[string]any{"id": g.ID, "type": g.Type, "profile": map[string]any{"name": g.Name, "description": ""}})
	}
	self := s.URL + r.URL.RequestURI()
	w.Header().Add("Link", "<"+self+`>; rel="self"`)
	if end < len(ids) {
		q := r.URL.Query()
		q.Set("after", ids[end-1])
		w.Header().Add("Link", "<"+s.URL+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
	}
	writeJSON(w, out)
}

// listLogs implements the System Log query: since/until bounds on published,
// filter (eventType eq "…" joined by or), limit (≤ 1000), ASCENDING order, an
// after cursor, and polling mode (no until: a next link on every page).
func (s *Server) listLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := limitParam(r, 100, 1000)
	if !ok {
		writeErr(w, http.StatusBadRequest, "E0000001", "Api validation failed: limit")
		return
	}
	if so := q.Get("sortOrder"); so != "" && so != "ASCENDING" {
		writeErr(w, http.StatusBadRequest, "E0000001", "Api validation failed: sortOrder (simulator supports ASCENDING)")
		return
	}
	now := s.now()
	since, until := now.Add(-7*24*time.Hour), now
	polling := q.Get("until") == ""
	for name, dst := range map[string]*time.Time{"since": &since, "until": &until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeErr(w, http.StatusBadRequest, "E0000030", "Bad request. Invalid date format for "+name)
				return
			}
			*dst = t
		}
	}
	types, err := parseTypeFilter(q.Get("filter"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "E0000031", "Invalid filter: "+err.Error())
		return
	}
	start := 0
	if after := q.Get("after"); after != "" {
		n, err := strconv.Atoi(after)
		if err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, "E0000001", "Api validation failed: after")
			return
		}
		start = n
	}
	s.mu.Lock()
	logs, times := s.logs, s.logTimes
	s.mu.Unlock()
	out := []json.RawMessage{}
	pos := start
	for ; pos < len(logs) && len(out) < limit; pos++ {
		if times[pos].Before(since) || !times[pos].Before(until) {
			continue
		}
		if types != nil {
			var head struct {
				EventType string `json:"eventType"`
			}
			_ = json.Unmarshal(logs[pos], &head)
			if !slices.Contains(types, head.EventType) {
				continue
			}
		}
		out = append(out, logs[pos])
	}
	w.Header().Add("Link", "<"+s.URL+r.URL.RequestURI()+`>; rel="self"`)
	if polling || pos < len(logs) {
		nq := r.URL.Query()
		nq.Set("after", strconv.Itoa(pos))
		w.Header().Add("Link", "<"+s.URL+"/api/v1/logs?"+nq.Encode()+`>; rel="next"`)
	}
	writeJSON(w, out)
}

func parseTypeFilter(f string) ([]string, error) {
	if strings.TrimSpace(f) == "" {
		return nil, nil
	}
	var types []string
	for _, part := range strings.Split(f, " or ") {
		part = strings.TrimSpace(part)
		rest, ok := strings.CutPrefix(part, "eventType eq ")
		if !ok {
			return nil, fmt.Errorf("simulator supports eventType eq \"…\" joined by or, not %q", part)
		}
		v, err := strconv.Unquote(rest)
		if err != nil {
			return nil, fmt.Errorf("bad string %s", rest)
		}
		types = append(types, v)
	}
	return types, nil
}
