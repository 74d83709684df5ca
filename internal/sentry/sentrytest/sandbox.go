package sentrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configures a Sandbox. The zero value is a usable demo sandbox.
type Options struct {
	Org                string        // org slug, default "acme" (or the seed's slug)
	Token              string        // user auth token of the service user, default "sandbox"
	ServiceUser        string        // email of the service user the Token belongs to, default "jml-bot@acme.test"
	SCIMToken          string        // optional SCIM integration token (empty = none)
	RegionURL          string        // links.regionUrl of the organization details; empty = the sandbox's own URL
	OrganizationURL    string        // links.organizationUrl; empty = the sandbox's own URL
	RateLimit          int           // requests per 1-second fixed window per (token, URL pattern, method); 0 = 40; <0 = disabled
	ConcurrentLimit    int           // 0 = 25
	Latency            time.Duration // added to every API request
	DisableInviteQuota bool          // invite quotas are on by default (100 per org per day, 10 per email per day)
	Seed               *Seed         // nil = DemoSeed()
	Now                func() time.Time

	// TokenScopes are the scopes of Token; nil = the scopes DESIGN.md asks
	// operators to grant (org:read org:write member:read member:write
	// member:admin team:read team:write project:read project:write).
	TokenScopes []string
	// FaultSeed seeds the random source used by probabilistic faults.
	FaultSeed uint64
	// Observer, when set, sees every API exchange (not /_sandbox/ control
	// traffic) after its response is written. NewServer adds the OpenAPI
	// check to it; production code leaves it nil.
	Observer Observer
}

// Exchange is one API request and the response the sandbox wrote for it.
type Exchange struct {
	Pattern     string        // the route template, e.g. PatternMember
	Request     *http.Request // as the handler saw it (path values set; the body is RequestBody)
	RequestBody []byte
	Status      int // 0 when the connection was dropped, 499 when the client gave up
	Header      http.Header
	Body        []byte
	// Injected is true when a Fault (not the modelled behaviour) produced
	// the response, or the client went away before one was written.
	Injected bool
}

// Observer sees API exchanges; Observe is called from the request's
// goroutine and must be safe for concurrent use.
type Observer interface {
	Observe(Exchange)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Exchange)

// Observe calls f(x).
func (f ObserverFunc) Observe(x Exchange) { f(x) }

// Sandbox is an in-memory Sentry API. It implements http.Handler and is safe
// for concurrent use.
type Sandbox struct {
	opts        Options
	now         func() time.Time
	tokenScopes map[string]bool

	mu sync.RWMutex
	st *state

	mux      *http.ServeMux
	ctl      *http.ServeMux
	limiter  *limiter
	stats    *statsRec
	faults   *faultSet
	quotaMu  sync.Mutex
	quotaDay int64
	quotaOrg int
	quotaTo  map[string]int
}

// New builds a sandbox. It panics if the seed is invalid (seeds are test
// fixtures; use LoadSeed to validate a file first).
func New(opts Options) *Sandbox {
	if opts.Seed == nil {
		opts.Seed = DemoSeed()
	}
	if opts.Org == "" {
		opts.Org = opts.Seed.Org.Slug
	}
	if opts.Org == "" {
		opts.Org = "acme"
	}
	if opts.Token == "" {
		opts.Token = "sandbox"
	}
	if opts.ServiceUser == "" {
		opts.ServiceUser = "jml-bot@acme.test"
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = 40
	}
	if opts.ConcurrentLimit == 0 {
		opts.ConcurrentLimit = 25
	}
	if opts.TokenScopes == nil {
		opts.TokenScopes = []string{"org:read", "org:write", "member:read", "member:write", "member:admin",
			"team:read", "team:write", "project:read", "project:write"}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	st, err := opts.Seed.build(opts.Org, now())
	if err != nil {
		panic(fmt.Errorf("sentrytest.New: %w", err))
	}
	st.scimToken = opts.SCIMToken
	s := &Sandbox{
		opts: opts, now: now, st: st,
		tokenScopes: map[string]bool{},
		limiter:     newLimiter(),
		stats:       newStatsRec(),
		faults:      &faultSet{rng: rand.New(rand.NewPCG(opts.FaultSeed, opts.FaultSeed^0x9e3779b97f4a7c15))},
		quotaTo:     map[string]int{},
	}
	for _, sc := range opts.TokenScopes {
		s.tokenScopes[sc] = true
	}
	s.routes()
	return s
}

// Server is a Sandbox listening on a loopback port.
type Server struct {
	*Sandbox
	URL string // base URL like http://127.0.0.1:PORT (no trailing slash)
}

// NewServer starts the sandbox on 127.0.0.1:0; it is closed in tb.Cleanup.
// Every API exchange is checked against Sentry's published OpenAPI schema
// (package openapicheck): the test fails at cleanup listing each violation
// the allowlist does not excuse.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	checkSpec(t, &opts)
	sb := New(opts)
	hs := httptest.NewServer(sb)
	t.Cleanup(hs.Close)
	return &Server{Sandbox: sb, URL: hs.URL}
}

// route is a registered API endpoint.
type route struct {
	s       *Sandbox
	method  string
	pattern string // Sentry's route shape, e.g. /api/0/organizations/{organization_id_or_slug}/members/
	h       func(*call)
}

// ServeHTTP is reached through the mux, which fills in the path values.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.s.serveAPI(w, r, rt)
}

// call is the per-request context handed to handlers.
type call struct {
	s    *Sandbox
	w    http.ResponseWriter
	r    *http.Request
	rt   *route
	p    *principal
	body []byte
}

func (s *Sandbox) handle(method, pattern string, h func(*call)) {
	rt := &route{s: s, method: method, pattern: pattern, h: h}
	muxPat := pattern
	if strings.HasSuffix(muxPat, "/") {
		muxPat += "{$}"
	}
	s.mux.Handle(method+" "+muxPat, rt)
	if strings.Contains(pattern, "/scim/v2/") && !strings.HasSuffix(pattern, "/") {
		// Sentry's SCIM routes are defined without a trailing slash; accept one too.
		s.mux.Handle(method+" "+pattern+"/{$}", rt)
	}
}

// ServeHTTP implements http.Handler.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sandbox/") {
		s.ctl.ServeHTTP(w, r)
		return
	}
	// Sentry's answers carry a Date header; the sandbox's follows its clock.
	w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
	h, _ := s.mux.Handler(r)
	if _, ok := h.(*route); !ok {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.Header().Get("Allow"))
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": fmt.Sprintf("Method %q not allowed.", r.Method)})
			return
		}
		writeJSON(w, http.StatusNotFound, detail("The requested resource does not exist"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int
	body   *bytes.Buffer // a copy of the body, kept only for an Observer
}

func (sw *statusWriter) WriteHeader(code int) {
	if sw.status == 0 {
		sw.status = code
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	n, err := sw.ResponseWriter.Write(b)
	sw.n += n
	if sw.body != nil {
		// What the sandbox answered, whole: a client that hung up mid-body
		// (a cancelled request) must not make the answer look malformed.
		sw.body.Write(b)
	}
	return n, err
}

// bufferWriter holds a response so an "after" fault can replace it.
type bufferWriter struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (b *bufferWriter) Header() http.Header { return b.h }
func (b *bufferWriter) WriteHeader(c int) {
	if b.status == 0 {
		b.status = c
	}
}
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = 200
	}
	return b.buf.Write(p)
}

func (s *Sandbox) serveAPI(w http.ResponseWriter, r *http.Request, rt *route) {
	start := time.Now()
	arrived := s.now().UTC()
	sw := &statusWriter{ResponseWriter: w}
	if s.opts.Observer != nil {
		sw.body = &bytes.Buffer{}
	}
	var latency time.Duration
	caller := "anonymous"
	var body []byte
	injected := false
	defer func() {
		took := time.Since(start)
		s.stats.record(rt.pattern, r.Method, sw.status, took, latency, LoggedRequest{Time: arrived, Method: r.Method,
			Pattern: rt.pattern, Path: r.URL.RequestURI(), Status: sw.status, Seconds: took.Seconds(), Caller: caller})
		if s.opts.Observer != nil {
			s.opts.Observer.Observe(Exchange{Pattern: rt.pattern, Request: r, RequestBody: body, Status: sw.status,
				Header: sw.Header().Clone(), Body: sw.body.Bytes(), Injected: injected || sw.status == 0 || sw.status == 499})
		}
	}()

	fault := s.faults.match(rt.pattern, r.Method)
	body, err := readBody(r)
	if err != nil {
		writeJSON(sw, http.StatusBadRequest, detail("Malformed request."))
		return
	}
	c := &call{s: s, w: sw, r: r, rt: rt, body: body}

	// Rate limiting runs first (Sentry's middleware); the concurrency slot is
	// held for the whole request, injected latency included.
	p, authErr := s.authenticate(r)
	key := clientIP(r)
	if p != nil {
		key = p.rateKey
		caller = p.name()
	}
	limitMsg := ""
	if s.opts.RateLimit > 0 {
		var release func()
		release, limitMsg = s.rateLimit(sw, key, rt, r.Method)
		if release != nil {
			defer release()
		}
	}
	latency = s.opts.Latency
	if fault != nil && fault.Latency > 0 && fault.Kind != FaultTimeout {
		latency += fault.Latency
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			sw.status = 499 // client closed request (nginx convention)
			return
		}
	}
	if limitMsg != "" {
		writeRateLimited(sw, limitMsg)
		return
	}
	if fault != nil && !fault.After && s.applyFault(sw, r, fault) {
		injected = true
		return
	}
	if authErr != "" {
		writeJSON(sw, http.StatusUnauthorized, detail(authErr))
		return
	}
	c.p = p
	org := r.PathValue("organization_id_or_slug")
	if org != "" && !s.orgMatches(org) {
		writeJSON(sw, http.StatusNotFound, detail("The requested resource does not exist"))
		return
	}
	if fault != nil && fault.After {
		// The handler runs (the change is applied), its response is lost.
		c.w = &bufferWriter{h: http.Header{}}
		rt.h(c)
		injected = s.applyFault(sw, r, fault)
		return
	}
	rt.h(c)
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, 1<<20)); err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return buf.Bytes(), nil
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "ip:" + r.RemoteAddr
	}
	return "ip:" + host
}

func (s *Sandbox) orgMatches(org string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return org == s.st.orgSlug || org == fmt.Sprint(s.st.orgID)
}

// ---- response helpers ----

func detail(msg string) map[string]string { return map[string]string{"detail": msg} }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"detail":"Internal Error","errorId":"sandbox-marshal"}`)
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeEmpty(w http.ResponseWriter, status int) {
	w.WriteHeader(status)
}

const scimErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"

func scimError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"schemas": []string{scimErrorSchema}, "detail": msg})
}

func (c *call) json(status int, v any) { writeJSON(c.w, status, v) }
func (c *call) detail(status int, msg string) {
	writeJSON(c.w, status, detail(msg))
}

func (c *call) decode(v any) bool {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return true
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		c.detail(http.StatusBadRequest, "Malformed request.")
		return false
	}
	return true
}
