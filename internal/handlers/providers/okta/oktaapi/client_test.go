package oktaapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta/oktaapi"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta/oktatest"
)

func mustClient(tb testing.TB, sim *oktatest.Server) *oktaapi.Client {
	tb.Helper()
	c, err := oktaapi.New(sim.URL, sim.Token, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestUser(t *testing.T) {
	sim := oktatest.NewServer(t)
	sim.AddUser(oktatest.User{ID: "00u1", Status: "SUSPENDED", Profile: map[string]string{"login": "jane@acme.com", "email": "jane@acme.com", "department": "Payments"}})
	c := mustClient(t, sim)
	ctx := context.Background()
	u, err := c.User(ctx, "00u1")
	if err != nil || u.ID != "00u1" || u.Status != "SUSPENDED" || u.Profile.Department != "Payments" || u.Created == nil {
		t.Fatalf("%+v %v", u, err)
	}
	if u, err := c.User(ctx, "jane@acme.com"); err != nil || u.ID != "00u1" {
		t.Fatalf("by login: %+v %v", u, err)
	}
	_, err = c.User(ctx, "00unknown")
	var apiErr *oktaapi.Error
	if !errors.Is(err, oktaapi.ErrNotFound) || !errors.As(err, &apiErr) || apiErr.Code != "E0000007" {
		t.Fatalf("missing user: %v", err)
	}
	bad, _ := oktaapi.New(sim.URL, "wrong", nil)
	if _, err := bad.User(ctx, "00u1"); !errors.Is(err, oktaapi.ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
	sim.FailNext("/api/v1/users", http.StatusTooManyRequests, 1)
	_, err = c.User(ctx, "00u1")
	if !errors.Is(err, oktaapi.ErrRateLimited) || !errors.As(err, &apiErr) || apiErr.RetryAt.IsZero() {
		t.Fatalf("429: %v", err)
	}
	if got := sim.Requests(); !strings.HasPrefix(got[0], "GET /api/v1/users/00u1") {
		t.Errorf("requests %v", got)
	}
}

func TestUserGroupsPagination(t *testing.T) {
	sim := oktatest.NewServer(t)
	sim.AddUser(oktatest.User{ID: "00u1", Profile: map[string]string{"login": "a@acme.com"}})
	for i := range 450 {
		sim.AddGroup(oktatest.Group{ID: fmt.Sprintf("00g%03d", i), Name: fmt.Sprintf("group-%03d", i)}, "00u1")
	}
	gs, err := mustClient(t, sim).UserGroups(context.Background(), "00u1")
	if err != nil || len(gs) != 450 || gs[449].Profile.Name != "group-449" {
		t.Fatalf("%d groups, %v", len(gs), err)
	}
	if n := len(sim.Requests()); n != 3 {
		t.Errorf("%d requests for 450 groups at limit 200, want 3", n)
	}
}

func addLogs(sim *oktatest.Server, start time.Time, n int) {
	for i := range n {
		sim.AddLogEvent(fmt.Sprintf(`{"uuid":"e%04d","published":%q,"eventType":"user.lifecycle.deactivate","target":[{"id":"00u%d","type":"User","alternateId":"u%d@acme.com"}]}`,
			i, start.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), i, i))
	}
}

func TestLogs(t *testing.T) {
	sim := oktatest.NewServer(t)
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	addLogs(sim, start, 25)
	sim.AddLogEvent(fmt.Sprintf(`{"uuid":"s1","published":%q,"eventType":"user.session.start"}`, start.Add(5*time.Second).Format(time.RFC3339)))
	c := mustClient(t, sim)
	ctx := context.Background()

	t.Run("polling query pages until an empty page", func(t *testing.T) {
		n := len(sim.Requests())
		got, err := c.Logs(ctx, oktaapi.LogQuery{Since: start, Limit: 10, Filter: oktaapi.EventTypeFilter("user.lifecycle.deactivate")})
		if err != nil || len(got) != 25 || got[0].UUID != "e0000" || got[24].UUID != "e0024" {
			t.Fatalf("%d events, %v", len(got), err)
		}
		reqs := sim.Requests()[n:]
		if len(reqs) != 4 { // 10 + 10 + 5 + empty
			t.Errorf("requests %v", reqs)
		}
		if !strings.Contains(reqs[0], "sortOrder=ASCENDING") || !strings.Contains(reqs[0], "filter=eventType+eq") {
			t.Errorf("first request %s", reqs[0])
		}
	})
	t.Run("bounded query stops without a next link", func(t *testing.T) {
		got, err := c.Logs(ctx, oktaapi.LogQuery{Since: start.Add(10 * time.Second), Until: start.Add(20 * time.Second), Limit: 4})
		if err != nil || len(got) != 10 || got[0].UUID != "e0010" {
			t.Fatalf("%d events, %v", len(got), err)
		}
	})
	t.Run("MaxPages bounds the listing", func(t *testing.T) {
		got, err := c.Logs(ctx, oktaapi.LogQuery{Since: start, Limit: 5, MaxPages: 2})
		if err == nil || len(got) != 10 {
			t.Fatalf("%d events, %v", len(got), err)
		}
	})
	t.Run("a failure mid-listing returns what was read and the error", func(t *testing.T) {
		sim.FailNext("/api/v1/logs", http.StatusServiceUnavailable, 0)
		got, err := c.Logs(ctx, oktaapi.LogQuery{Since: start, Limit: 10})
		if err != nil || len(got) != 26 {
			t.Fatalf("%d %v", len(got), err)
		}
		sim.FailNext("/api/v1/logs", http.StatusInternalServerError, 1)
		if _, err := c.Logs(ctx, oktaapi.LogQuery{Since: start}); err == nil {
			t.Fatal("no error on 500")
		}
	})
	t.Run("ErrSinceRequired", func(t *testing.T) {
		if _, err := c.Logs(ctx, oktaapi.LogQuery{}); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestNextLinkMustStayOnTheOrg(t *testing.T) {
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("token sent to another host: %s", r.Header.Get("Authorization"))
	}))
	defer evil.Close()
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "<"+evil.URL+`/api/v1/logs?after=1>; rel="next"`)
		_, _ = w.Write([]byte(`[{"uuid":"x","eventType":"user.lifecycle.deactivate"}]`))
	}))
	defer org.Close()
	c, err := oktaapi.New(org.URL, "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logs(context.Background(), oktaapi.LogQuery{Since: time.Now()}); err == nil {
		t.Fatal("followed a next link to another host")
	}
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "acme.okta.com", "ftp://acme.okta.com"} {
		if _, err := oktaapi.New(u, "t", nil); err == nil {
			t.Errorf("%q: no error", u)
		}
	}
	if _, err := oktaapi.New("https://acme.okta.com", " ", nil); err == nil {
		t.Error("blank token: no error")
	}
	if got := oktaapi.EventTypeFilter("a", "b"); got != `eventType eq "a" or eventType eq "b"` {
		t.Errorf("filter %s", got)
	}
}
