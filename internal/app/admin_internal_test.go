package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	aliceToken = "alice-0123456789abcdef"
	bobToken   = "bob-fedcba9876543210"
)

// openRoutes are the only routes served without the guard.
var openRoutes = []string{"GET /healthz", "GET /readyz", "GET /metrics"}

// adminForTest builds the admin API of a real worker (embedded NATS, the
// Sentry sandbox) with every route registered, and the list of its patterns.
func adminForTest(t *testing.T, o AdminOptions) (http.Handler, []string) {
	t.Helper()
	w, _ := testWorker(t, nil)
	o.Worker = w
	o.Status = func(context.Context) any { return map[string]string{"ok": "yes"} }
	o.Metrics = http.NotFoundHandler()
	o.Routes = ReconcileRoutes(w, ReconcileOptions{})
	if o.Operators == nil {
		o.Operators = []Operator{{Name: "alice", Token: aliceToken}, {Name: "bob", Token: bobToken}}
	}
	return adminMux(o)
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// requestFor turns a mux pattern ("POST /v1/x/{id}") into a request.
func requestFor(pattern string) *http.Request {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = http.MethodGet, pattern
	}
	path = wildcard.ReplaceAllString(path, "x")
	if strings.HasSuffix(path, "/") {
		path += "anything"
	}
	r := httptest.NewRequest(method, "http://127.0.0.1:8081"+path, nil)
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// guardedRoutes are every registered pattern but the open ones; each must be
// under /v1/, so a route added later is covered by the tests below.
func guardedRoutes(t *testing.T, patterns []string) []string {
	t.Helper()
	var out []string
	for _, p := range patterns {
		if slices.Contains(openRoutes, p) {
			continue
		}
		_, path, ok := strings.Cut(p, " ")
		if !ok {
			path = p
		}
		if !strings.HasPrefix(path, "/v1/") {
			t.Errorf("route %q is neither open nor under /v1/", p)
		}
		out = append(out, p)
	}
	for _, want := range []string{"GET /v1/status", "POST /v1/pause", "POST /v1/resume", "POST /v1/approve", "GET /v1/evidence",
		"POST /v1/dlq/replay", "GET /v1/sources/gusto/key", "POST /v1/reconcile", "POST /v1/roster/import", "/v1/"} {
		if !slices.Contains(out, want) {
			t.Errorf("route %q is not registered; the enumeration is incomplete", want)
		}
	}
	return out
}

// TestAdminEveryV1RouteRequiresToken: no token, a wrong one, an empty one or
// the right one under another scheme is a 401 on every /v1 route, status
// included; the right token is not.
func TestAdminEveryV1RouteRequiresToken(t *testing.T) {
	h, patterns := adminForTest(t, AdminOptions{})
	routes := guardedRoutes(t, patterns)
	auths := map[string]string{"none": "", "wrong": "Bearer wrong-0123456789abcdef", "empty": "Bearer ", "bare": "Bearer",
		"basic": "Basic " + aliceToken, "prefix": "Bearer " + aliceToken[:len(aliceToken)-1], "longer": "Bearer " + aliceToken + "x"}
	for _, p := range routes {
		for name, auth := range auths {
			r := requestFor(p)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			if rec := serve(h, r); rec.Code != http.StatusUnauthorized {
				t.Errorf("%s with %s token: %d, want 401", p, name, rec.Code)
			} else if !strings.Contains(rec.Body.String(), `"error"`) || rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s with %s token: body %q, WWW-Authenticate %q", p, name, rec.Body, rec.Header().Get("WWW-Authenticate"))
			}
		}
	}
	for _, tok := range []string{aliceToken, bobToken} {
		r := requestFor("GET /v1/status")
		r.Header.Set("Authorization", "bearer "+tok)
		if rec := serve(h, r); rec.Code != http.StatusOK {
			t.Errorf("status with a valid token: %d %s", rec.Code, rec.Body)
		}
	}
	for _, p := range openRoutes[:2] {
		if rec := serve(h, requestFor(p)); rec.Code != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200", p, rec.Code)
		}
	}
}

// TestAdminWithoutOperatorsRefusesAll: an admin API given no credential
// refuses every /v1 request, whatever the client sends.
func TestAdminWithoutOperatorsRefusesAll(t *testing.T) {
	h, patterns := adminForTest(t, AdminOptions{Operators: []Operator{{Name: "nobody", Token: ""}}})
	for _, p := range guardedRoutes(t, patterns) {
		for _, auth := range []string{"", "Bearer ", "Bearer x"} {
			r := requestFor(p)
			r.Header.Set("Authorization", auth)
			if rec := serve(h, r); rec.Code != http.StatusUnauthorized {
				t.Errorf("%s (%q) without configured operators: %d", p, auth, rec.Code)
			}
		}
	}
}

// TestAdminRefusesBrowsers: a request with Origin (or Sec-Fetch-Site) is a
// 403 on every /v1 route even with a valid token; /healthz and /readyz stay open.
func TestAdminRefusesBrowsers(t *testing.T) {
	h, patterns := adminForTest(t, AdminOptions{})
	for _, p := range guardedRoutes(t, patterns) {
		for hdr, v := range map[string]string{"Origin": "http://127.0.0.1:8081", "Sec-Fetch-Site": "same-origin"} {
			r := requestFor(p)
			r.Header.Set("Authorization", "Bearer "+aliceToken)
			r.Header.Set(hdr, v)
			rec := serve(h, r)
			var e map[string]string
			if rec.Code != http.StatusForbidden || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e["error"] == "" {
				t.Errorf("%s with %s: %d %s, want 403 with a JSON error", p, hdr, rec.Code, rec.Body)
			}
		}
	}
	for _, p := range openRoutes[:2] {
		r := requestFor(p)
		r.Header.Set("Origin", "https://evil.example")
		if rec := serve(h, r); rec.Code != http.StatusOK {
			t.Errorf("%s with Origin: %d", p, rec.Code)
		}
	}
}

// TestAdminHostOnLoopback: on a loopback listener a foreign Host is refused
// (DNS rebinding), loopback literals, localhost and the allow list pass; on
// another bind the Host is not checked.
func TestAdminHostOnLoopback(t *testing.T) {
	h, patterns := adminForTest(t, AdminOptions{Loopback: true, AllowedHosts: []string{"jml.internal", "Fwd.Example:18081"}})
	routes := guardedRoutes(t, patterns)
	pass := []string{"127.0.0.1:8081", "127.0.0.1", "127.9.8.7:1", "localhost", "LOCALHOST:9", "localhost.:8081", "[::1]:8081", "[::1]",
		"jml.internal", "jml.internal:443", "fwd.example:18081"}
	refuse := []string{"evil.example", "evil.example:8081", "fwd.example:1", "fwd.example", "10.0.0.1:8081", "localhost.evil.example",
		"127.0.0.1.nip.io", "[::2]:8081", ""}
	for _, p := range routes {
		for _, host := range refuse {
			r := requestFor(p)
			r.Host = host
			r.Header.Set("Authorization", "Bearer "+aliceToken)
			if rec := serve(h, r); rec.Code != http.StatusMisdirectedRequest {
				t.Errorf("%s Host %q: %d, want 421", p, host, rec.Code)
			}
		}
	}
	for _, host := range pass {
		r := requestFor("GET /v1/status")
		r.Host = host
		r.Header.Set("Authorization", "Bearer "+aliceToken)
		if rec := serve(h, r); rec.Code != http.StatusOK {
			t.Errorf("Host %q: %d %s, want 200", host, rec.Code, rec.Body)
		}
	}
	// A refused Host does not need a token to be refused, and a good one still does.
	r := requestFor("GET /v1/status")
	if rec := serve(h, r); rec.Code != http.StatusUnauthorized {
		t.Errorf("loopback Host without a token: %d", rec.Code)
	}
	r = requestFor("GET /readyz")
	r.Host = "evil.example"
	if rec := serve(h, r); rec.Code != http.StatusOK {
		t.Errorf("/readyz with a foreign Host: %d", rec.Code)
	}

	open, _ := adminForTest(t, AdminOptions{Loopback: false})
	r = requestFor("GET /v1/status")
	r.Host = "jml-worker.jml.svc:8081"
	r.Header.Set("Authorization", "Bearer "+aliceToken)
	if rec := serve(open, r); rec.Code != http.StatusOK {
		t.Errorf("non-loopback bind, service Host: %d", rec.Code)
	}
}

// TestAdminActorIsTheTokensOperator: pauses and reconcile runs record the
// operator whose token was used, never X-JML-Actor.
func TestAdminActorIsTheTokensOperator(t *testing.T) {
	h, _ := adminForTest(t, AdminOptions{})
	call := func(pattern, token string) map[string]any {
		t.Helper()
		r := requestFor(pattern)
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("X-JML-Actor", "mallory")
		rec := serve(h, r)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", pattern, rec.Code, rec.Body)
		}
		var v map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := call("POST /v1/pause?wait=0s", aliceToken); v["paused_by"] != "alice" {
		t.Errorf("pause recorded %v, want alice", v["paused_by"])
	}
	if v := call("GET /v1/control", bobToken); v["paused_by"] != "alice" {
		t.Errorf("control says paused by %v, want alice", v["paused_by"])
	}
	if v := call("POST /v1/reconcile?dry_run=true", bobToken); v["trigger"] != "operator:bob" {
		t.Errorf("reconcile trigger %v, want operator:bob", v["trigger"])
	}
}

// TestReadyzSaysNothingMore: a failing readiness answers 503 without the reason.
func TestReadyzSaysNothingMore(t *testing.T) {
	const reason = "nats: dial tcp 10.1.2.3:4222: secret-topology"
	h := AdminHandler(AdminOptions{Ready: func(context.Context) error { return errors.New(reason) }})
	rec := serve(h, requestFor("GET /readyz"))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz: %d", rec.Code)
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || len(v) != 1 || v["status"] != "unavailable" {
		t.Fatalf("readyz body %s", rec.Body)
	}
}

// TestAuthenticateChecksEveryToken: the last operator's token matches too,
// and a digest collision with no token is impossible for empty input.
func TestAuthenticateChecksEveryToken(t *testing.T) {
	ops := []Operator{{Name: "a", Token: "a-0123456789abcdef"}, {Name: "b", Token: "b-0123456789abcdef"}, {Name: "c", Token: "c-0123456789abcdef"}}
	g := newGuard(AdminOptions{Operators: ops})
	for _, op := range ops {
		if name, ok := g.authenticate("Bearer " + op.Token); !ok || name != op.Name {
			t.Errorf("token of %s: %q %v", op.Name, name, ok)
		}
	}
	if _, ok := g.authenticate("Bearer "); ok {
		t.Error("an empty bearer was accepted")
	}
	if OperatorFrom(context.Background()) != "" {
		t.Error("an operator outside a request")
	}
}
