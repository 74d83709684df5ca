package sentrytest

import (
	"sort"
	"sync"
	"time"
)

// Stats is the request log summary served at GET /_sandbox/stats.
type Stats struct {
	Requests       []RequestCount            `json:"requests"`        // grouped by pattern, method, status
	TotalRequests  int                       `json:"total_requests"`  // API requests (not /_sandbox/)
	Mutations      map[string]map[string]int `json:"mutations"`       // kind → member email → successful state changes
	ServingSeconds float64                   `json:"serving_seconds"` // total time serving API requests, including injected latency
	LatencySeconds float64                   `json:"latency_seconds"` // the injected latency part of ServingSeconds
	RateLimited    int                       `json:"rate_limited"`    // requests answered 429 by the rate limiter
	FaultsInjected int                       `json:"faults_injected"` // requests answered by an injected fault

	// ReconcileMinimumCalls is the fewest API calls a full no-change
	// reconcile of the current organization needs: member pages + team-list
	// pages + team-member pages (at least one per team) + one per pending
	// invite, all at per_page=100. Computed from the current state.
	ReconcileMinimumCalls int `json:"reconcile_minimum_calls"`
}

// RequestCount counts requests of one (pattern, method, status).
type RequestCount struct {
	Pattern string `json:"pattern"`
	Method  string `json:"method"`
	Status  int    `json:"status"`
	Count   int    `json:"count"`
}

type reqKey struct {
	pattern, method string
	status          int
}

// LoggedRequest is one API request in the request log (GET /_sandbox/requests).
type LoggedRequest struct {
	Time    time.Time `json:"time"` // when the request arrived (sandbox clock)
	Method  string    `json:"method"`
	Pattern string    `json:"pattern"`
	Path    string    `json:"path"` // path and query as sent
	Status  int       `json:"status"`
	Seconds float64   `json:"seconds"` // serving time incl. injected latency
	Caller  string    `json:"caller"`  // user email, "scim", "org-token:<name>" or "anonymous"
}

const requestLogSize = 10000

type statsRec struct {
	mu        sync.Mutex
	log       []LoggedRequest // ring buffer once full
	logNext   int             // next slot to overwrite when full
	requests  map[reqKey]int
	total     int
	mutations map[string]map[string]int
	serving   time.Duration
	latency   time.Duration
	limited   int
	faults    int
}

func newStatsRec() *statsRec {
	return &statsRec{requests: map[reqKey]int{}, mutations: map[string]map[string]int{}}
}

func (r *statsRec) record(pattern, method string, status int, took, latency time.Duration, entry LoggedRequest) {
	r.mu.Lock()
	if len(r.log) < requestLogSize {
		r.log = append(r.log, entry)
	} else {
		r.log[r.logNext] = entry
		r.logNext = (r.logNext + 1) % requestLogSize
	}
	r.requests[reqKey{pattern, method, status}]++
	r.total++
	r.serving += took
	r.latency += latency
	r.mu.Unlock()
}

func (r *statsRec) rateLimited() {
	r.mu.Lock()
	r.limited++
	r.mu.Unlock()
}

func (r *statsRec) fault() {
	r.mu.Lock()
	r.faults++
	r.mu.Unlock()
}

func (r *statsRec) mutation(kind, email string) {
	r.mu.Lock()
	m := r.mutations[kind]
	if m == nil {
		m = map[string]int{}
		r.mutations[kind] = m
	}
	m[lower(email)]++
	r.mu.Unlock()
}

func (r *statsRec) reset() {
	r.mu.Lock()
	r.requests = map[reqKey]int{}
	r.total = 0
	r.mutations = map[string]map[string]int{}
	r.serving, r.latency = 0, 0
	r.limited, r.faults = 0, 0
	r.log, r.logNext = nil, 0
	r.mu.Unlock()
}

func (r *statsRec) requestLog() []LoggedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(append(make([]LoggedRequest, 0, len(r.log)), r.log[r.logNext:]...), r.log[:r.logNext]...)
}

// RequestLog returns the last 10,000 API requests, oldest first.
func (s *Sandbox) RequestLog() []LoggedRequest { return s.stats.requestLog() }

func (r *statsRec) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{
		Requests:       make([]RequestCount, 0, len(r.requests)),
		TotalRequests:  r.total,
		Mutations:      make(map[string]map[string]int, len(r.mutations)),
		ServingSeconds: r.serving.Seconds(),
		LatencySeconds: r.latency.Seconds(),
		RateLimited:    r.limited,
		FaultsInjected: r.faults,
	}
	for k, n := range r.requests {
		s.Requests = append(s.Requests, RequestCount{Pattern: k.pattern, Method: k.method, Status: k.status, Count: n})
	}
	sort.Slice(s.Requests, func(i, j int) bool {
		a, b := s.Requests[i], s.Requests[j]
		if a.Pattern != b.Pattern {
			return a.Pattern < b.Pattern
		}
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		return a.Status < b.Status
	})
	for kind, m := range r.mutations {
		c := make(map[string]int, len(m))
		for e, n := range m {
			c[e] = n
		}
		s.Mutations[kind] = c
	}
	return s
}

// Stats returns the same data as GET /_sandbox/stats.
func (s *Sandbox) Stats() Stats {
	st := s.stats.snapshot()
	st.ReconcileMinimumCalls = s.ReconcileMinimumCalls()
	return st
}

// ReconcileMinimumCalls: see Stats.ReconcileMinimumCalls.
func (s *Sandbox) ReconcileMinimumCalls() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pages := func(n int) int {
		if n == 0 {
			return 1 // an empty list still takes one request
		}
		return (n + 99) / 100
	}
	calls := pages(len(s.st.memberOrder)) + pages(len(s.st.teams))
	for _, t := range s.st.teams {
		calls += pages(memberCount(t))
	}
	for _, m := range s.st.memberOrder {
		if m.pending() {
			calls++
		}
	}
	return calls
}

// ResetStats clears the request log and counters (POST /_sandbox/stats/reset).
func (s *Sandbox) ResetStats() { s.stats.reset() }

// Count returns how many requests matched pattern and method (any status).
func (st Stats) Count(pattern, method string) int {
	n := 0
	for _, r := range st.Requests {
		if r.Pattern == pattern && r.Method == method {
			n += r.Count
		}
	}
	return n
}
