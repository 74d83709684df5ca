package sentrytest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// recTB records what NewServer's check reports instead of failing the test.
type recTB struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recTB) Helper()                   {}
func (r *recTB) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }
func (r *recTB) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recTB) Fatalf(f string, a ...any) { r.TB.Fatalf(f, a...) }
func (r *recTB) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// TestNewServerFailsOnSchemaViolation: real traffic passes; a response that
// breaks the schema (a member whose id is a number) fails the test at
// cleanup, naming the field; an injected fault is not checked.
func TestNewServerFailsOnSchemaViolation(t *testing.T) {
	rec := &recTB{TB: t}
	srv := NewServer(rec, Options{RateLimit: -1})
	c := newClient(t, srv)
	jane := memberID(t, srv.Sandbox, "jane.doe@acme.test")
	good := c.do("GET", "/api/0/organizations/acme/members/"+jane+"/", nil)
	expect(t, good, 200, `"email"`)
	srv.InjectFault(Fault{Pattern: PatternMembers, Method: "GET", Kind: FaultError, Status: 503})
	if r := c.do("GET", "/api/0/organizations/acme/members/", nil); r.status != 503 {
		t.Fatalf("fault not applied: %d", r.status)
	}

	// The same response with one wrong field (a numeric id), as if the
	// sandbox had written it.
	wrong := strings.Replace(string(good.body), `"id":"`+jane+`"`, `"id":`+jane, 1)
	if wrong == string(good.body) {
		t.Fatalf("no string id in %s", good.body)
	}
	req := httptest.NewRequest("GET", "/api/0/organizations/acme/members/"+jane+"/", nil)
	req.SetPathValue("organization_id_or_slug", "acme")
	req.SetPathValue("member_id", jane)
	h := http.Header{"Content-Type": {"application/json"}}
	srv.opts.Observer.Observe(Exchange{Pattern: PatternMember, Request: req, Status: 200, Header: h, Body: []byte(wrong)})

	rec.cleanup()
	if len(rec.errs) != 1 {
		t.Fatalf("want one failure, got %q", rec.errs)
	}
	if e := rec.errs[0]; !strings.Contains(e, "1 API exchange(s)") || !strings.Contains(e, "response:/id") {
		t.Fatalf("report does not name the violation: %s", e)
	}
}
