package sentrytest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

type principalKind int

const (
	kindUser        principalKind = iota // user auth token (or act-as)
	kindOrgToken                         // org auth token, scope org:ci
	kindIntegration                      // SCIM internal integration token
)

// principal is the authenticated caller. Membership is re-derived from the
// current state on every request, as Sentry does, so a removed user's token
// gets 403 on the organization.
type principal struct {
	kind     principalKind
	user     *user
	actAs    bool
	token    *orgToken
	rateKey  string
	member   *member // filled by resolve under the state lock
	tokScope map[string]bool
}

// resolve binds the principal to the current state; call with s.mu held.
func (p *principal) resolve(st *state) {
	p.member = nil
	if p.kind == kindUser && p.user != nil {
		p.member = st.memberByUser[p.user.id]
	}
}

// scopes returns the effective scopes: token ∩ role for users.
func (p *principal) has(scope string) bool {
	switch p.kind {
	case kindOrgToken:
		return scope == "org:ci"
	case kindIntegration:
		switch scope {
		// The SCIM internal integration Sentry creates when SCIM is enabled
		// (AuthProvider.enable_scim, src/sentry/models/authprovider.py) has
		// exactly these scopes; like any integration token it works on every
		// route they allow, the REST ones included.
		case "member:read", "member:write", "member:admin", "team:write", "team:admin":
			return true
		}
		return false
	}
	if p.member == nil {
		return false
	}
	if !p.actAs && !p.tokScope[scope] {
		return false
	}
	r, _ := findOrgRole(p.member.role)
	for _, sc := range r.scopes {
		if sc == scope {
			return true
		}
	}
	return false
}

func (p *principal) hasAny(scopes ...string) bool {
	for _, sc := range scopes {
		if p.has(sc) {
			return true
		}
	}
	return false
}

func (p *principal) name() string {
	switch p.kind {
	case kindIntegration:
		return "scim"
	case kindOrgToken:
		return "org-token:" + p.token.name
	}
	return p.user.email
}

// authenticate resolves the Authorization header. On failure it returns a
// nil principal and the 401 detail message.
func (s *Sandbox) authenticate(r *http.Request) (*principal, string) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	tok = strings.TrimSpace(tok)
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, "Authentication credentials were not provided."
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.st
	actAs := strings.TrimSpace(r.Header.Get("X-Sandbox-Act-As"))
	switch {
	case tok == s.opts.Token:
		email := s.opts.ServiceUser
		p := &principal{kind: kindUser, tokScope: s.tokenScopes}
		if actAs != "" {
			email = actAs
			p.actAs = true
		}
		u := st.userByEmail[lower(email)]
		if u == nil {
			if p.actAs {
				return nil, "Invalid token" // no such user to act as
			}
			// The service user is not a Sentry user at all: token valid, no org access.
			u = &user{id: -1, email: email, name: email}
		}
		p.user = u
		p.rateKey = "user:" + strconv.FormatInt(u.id, 10)
		return p, ""
	case st.scimToken != "" && tok == st.scimToken:
		return &principal{kind: kindIntegration, rateKey: "org:" + strconv.FormatInt(st.orgID, 10) + ":scim"}, ""
	case strings.HasPrefix(tok, "sntrys_"):
		t := st.tokenByText[tok]
		if t == nil || !t.active {
			return nil, "Invalid org token"
		}
		return &principal{kind: kindOrgToken, token: t, rateKey: "orgtoken:" + strconv.FormatInt(t.id, 10)}, ""
	}
	return nil, "Invalid token"
}

// ---- rate limits ----

type rlKey struct {
	caller, pattern, method string
}

type rlWindow struct {
	start    int64
	count    int
	inflight int
}

type limiter struct {
	mu sync.Mutex
	m  map[rlKey]*rlWindow
}

func newLimiter() *limiter { return &limiter{m: map[rlKey]*rlWindow{}} }

// rateLimit applies Sentry's fixed-window and concurrent limits and sets the
// X-Sentry-Rate-Limit-* headers. It returns a release func for the
// concurrency slot (nil if none taken) and, when the request is limited, the
// 429 body (a bare JSON string).
func (s *Sandbox) rateLimit(w http.ResponseWriter, caller string, rt *route, method string) (func(), string) {
	now := s.now()
	sec := now.Unix()
	k := rlKey{caller, rt.pattern, method}
	l := s.limiter
	l.mu.Lock()
	win := l.m[k]
	if win == nil {
		win = &rlWindow{start: sec}
		l.m[k] = win
	}
	if win.start != sec {
		win.start, win.count = sec, 0
	}
	win.count++
	limited := win.count > s.opts.RateLimit
	concLimited := false
	if !limited {
		if win.inflight >= s.opts.ConcurrentLimit {
			concLimited = true
		} else {
			win.inflight++
		}
	}
	remaining := s.opts.RateLimit - win.count
	if remaining < 0 {
		remaining = 0
	}
	concRemaining := s.opts.ConcurrentLimit - win.inflight
	if concRemaining < 0 {
		concRemaining = 0
	}
	l.mu.Unlock()

	hd := w.Header()
	hd.Set("X-Sentry-Rate-Limit-Limit", strconv.Itoa(s.opts.RateLimit))
	hd.Set("X-Sentry-Rate-Limit-Remaining", strconv.Itoa(remaining))
	hd.Set("X-Sentry-Rate-Limit-Reset", strconv.FormatInt(sec+1, 10))
	hd.Set("X-Sentry-Rate-Limit-ConcurrentLimit", strconv.Itoa(s.opts.ConcurrentLimit))
	hd.Set("X-Sentry-Rate-Limit-ConcurrentRemaining", strconv.Itoa(concRemaining))
	if limited || concLimited {
		s.stats.rateLimited()
		msg := fmt.Sprintf("You are attempting to use this endpoint too frequently. Limit is %d requests in 1 seconds", s.opts.RateLimit)
		if concLimited {
			msg = fmt.Sprintf("You are attempting to go above the allowed concurrency for this endpoint. Concurrency limit is %d", s.opts.ConcurrentLimit)
		}
		return nil, msg
	}
	return func() {
		l.mu.Lock()
		win.inflight--
		l.mu.Unlock()
	}, ""
}
