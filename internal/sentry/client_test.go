package sentry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// target is a Sentry the client suite runs against.
type target struct {
	cfg sentry.Config
	// sb is the sandbox; nil against a real Sentry org, where only read-only
	// subtests run.
	sb *sentrytest.Server
}

const sandboxToken = "sntryu_sandbox-secret-0123456789"

func newSandboxTarget(t *testing.T, opts sentrytest.Options) target {
	t.Helper()
	if opts.Token == "" {
		opts.Token = sandboxToken
	}
	sb := sentrytest.NewServer(t, opts)
	org := opts.Org
	if org == "" {
		org = "acme"
	}
	return target{sb: sb, cfg: sentry.Config{BaseURL: sb.URL, Org: org, Token: opts.Token, AllowAnyToken: true, Gate: &safetytest.Gate{}}}
}

func (tg target) client(t *testing.T, mod ...func(*sentry.Config)) *sentry.Client {
	t.Helper()
	cfg := tg.cfg
	for _, m := range mod {
		m(&cfg)
	}
	c, err := sentry.New(cfg)
	if err != nil {
		t.Fatalf("sentry.New: %v", err)
	}
	return c
}

func (tg target) needSandbox(t *testing.T) *sentrytest.Server {
	t.Helper()
	if tg.sb == nil {
		t.Skip("needs the sandbox (mutates the organization)")
	}
	return tg.sb
}

func TestClientSandbox(t *testing.T) {
	runClientSuite(t, func(t *testing.T) target { return newSandboxTarget(t, sentrytest.Options{}) })
}

func TestClientRealSentry(t *testing.T) {
	u, tok, org := os.Getenv("JML_TEST_SENTRY_URL"), os.Getenv("JML_TEST_SENTRY_TOKEN"), os.Getenv("JML_TEST_SENTRY_ORG")
	if u == "" || tok == "" || org == "" {
		t.Skip("set JML_TEST_SENTRY_URL, JML_TEST_SENTRY_TOKEN and JML_TEST_SENTRY_ORG to run against a real Sentry org")
	}
	runClientSuite(t, func(t *testing.T) target {
		return target{cfg: sentry.Config{BaseURL: u, Org: org, Token: tok, Gate: &safetytest.Gate{}}}
	})
}

func collect[T any](t *testing.T, seq func(func(T, error) bool)) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			t.Fatalf("iterate: %v", err)
		}
		out = append(out, v)
	}
	return out
}

// runClientSuite is the client's contract, run against the sandbox always and
// against a real Sentry org when configured. Subtests that change the org need
// the sandbox.
func runClientSuite(t *testing.T, newTarget func(t *testing.T) target) {
	ctx := context.Background()

	t.Run("Me", func(t *testing.T) {
		c := newTarget(t).client(t)
		me, err := c.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if me.ID == "" || me.User == nil || me.User.ID == "" || me.OrgRole == "" {
			t.Errorf("Me = %+v", me)
		}
	})

	t.Run("Check", func(t *testing.T) {
		tg := newTarget(t)
		c := tg.client(t)
		r, err := c.Check(ctx)
		if err != nil {
			t.Fatalf("Check: %v (result %+v)", err, r)
		}
		me, err := c.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.MemberID != me.ID || r.UserID != me.User.ID || r.OrgRole != me.OrgRole {
			t.Errorf("Check = %+v, Me = %+v", r, me)
		}
		if tg.sb != nil {
			if !r.SCIMEnabled || !r.RateLimitHeaders || r.RateLimit != 40 || !(r.ScopesKnown || r.ScopesFromRole) || len(r.MissingScopes) > 0 {
				t.Errorf("Check = %+v", r)
			}
		}
	})

	t.Run("GetMember", func(t *testing.T) {
		c := newTarget(t).client(t)
		me, err := c.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.GetMember(ctx, me.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != me.ID || m.Email != me.Email {
			t.Errorf("GetMember = %+v, Me = %+v", m, me)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		c := newTarget(t).client(t)
		if _, err := c.GetMember(ctx, "999999999999"); !errors.Is(err, sentry.ErrNotFound) {
			t.Errorf("GetMember(unknown) err = %v, want ErrNotFound", err)
		}
		if err := c.DeleteMember(ctx, "999999999999"); !errors.Is(err, sentry.ErrNotFound) {
			t.Errorf("DeleteMember(unknown) err = %v, want ErrNotFound", err)
		}
	})

	t.Run("FindMembersByEmail", func(t *testing.T) {
		c := newTarget(t).client(t)
		me, err := c.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		email := me.Email
		if me.User != nil && me.User.Email != "" {
			email = me.User.Email
		}
		for _, q := range []string{email, strings.ToUpper(email)} {
			ms, err := c.FindMembersByEmail(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || ms[0].ID != me.ID {
				t.Errorf("FindMembersByEmail(%q) = %+v, want only %s", q, ms, me.ID)
			}
		}
		ms, err := c.FindMembersByEmail(ctx, "nobody-jml-test@example.invalid")
		if err != nil || len(ms) != 0 {
			t.Errorf("FindMembersByEmail(nobody) = %v, %v", ms, err)
		}
		// A prefix of the address is not a match.
		local, _, _ := strings.Cut(email, "@")
		ms, err = c.FindMembersByEmail(ctx, local)
		if err != nil || len(ms) != 0 {
			t.Errorf("FindMembersByEmail(%q) = %v, %v", local, ms, err)
		}
	})

	t.Run("ListMembers", func(t *testing.T) {
		tg := newTarget(t)
		c := tg.client(t)
		me, err := c.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ms := collect(t, c.ListMembers(ctx, ""))
		seen := map[string]bool{}
		for _, m := range ms {
			if seen[m.ID] {
				t.Errorf("member %s listed twice", m.ID)
			}
			seen[m.ID] = true
		}
		if !seen[me.ID] {
			t.Errorf("own member %s not listed", me.ID)
		}
		if tg.sb != nil && len(ms) != len(tg.sb.Members()) {
			t.Errorf("listed %d members, sandbox has %d", len(ms), len(tg.sb.Members()))
		}
	})

	t.Run("ListTeamsAndProjects", func(t *testing.T) {
		c := newTarget(t).client(t)
		teams := collect(t, c.ListTeams(ctx, ""))
		for _, tm := range teams[:min(len(teams), 3)] {
			if _, err := c.GetTeam(ctx, tm.Slug); err != nil {
				t.Errorf("GetTeam(%s): %v", tm.Slug, err)
			}
			_ = collect(t, c.TeamMembers(ctx, tm.Slug))
		}
		_ = collect(t, c.ListProjects(ctx))
	})

	t.Run("AuditLogsAndTokens", func(t *testing.T) {
		c := newTarget(t).client(t)
		n := 0
		for e, err := range c.AuditLogs(ctx, sentry.AuditLogQuery{Event: "org-auth-token.create"}) {
			if err != nil {
				t.Fatal(err)
			}
			if e.Event != "org-auth-token.create" {
				t.Errorf("event filter ignored: %+v", e)
			}
			if n++; n >= 200 {
				break
			}
		}
		if _, err := c.ListOrgAuthTokens(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DeleteMember", func(t *testing.T) {
		tg := newTarget(t)
		sb := tg.needSandbox(t)
		c := tg.client(t)
		ms, err := c.FindMembersByEmail(ctx, "jane.doe@acme.test")
		if err != nil || len(ms) != 1 {
			t.Fatalf("find jane: %v %v", ms, err)
		}
		if ms[0].IdPProvisioned() {
			t.Fatalf("jane is idp:provisioned")
		}
		if err := c.DeleteMember(ctx, ms[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, ok := sb.Member("jane.doe@acme.test"); ok {
			t.Error("jane still a member")
		}
		if err := c.DeleteMember(ctx, ms[0].ID); !errors.Is(err, sentry.ErrNotFound) {
			t.Errorf("second delete err = %v, want ErrNotFound", err)
		}
	})

	t.Run("IdentityMatching", func(t *testing.T) {
		tg := newTarget(t)
		tg.needSandbox(t)
		c := tg.client(t)
		for _, tc := range []struct {
			email string
			n     int
		}{
			{"jane.doe@acme.test", 1},
			{" Jane.Doe@ACME.test ", 1},
			{"jane@janedoe.example", 0}, // verified secondary address
			{"j.doe@old-acme.test", 0},  // unverified secondary address
			{"jane", 0},
			{"jane.doe@acme", 0},
			{"new.hire@acme.test", 1}, // pending invite
		} {
			ms, err := c.FindMembersByEmail(ctx, tc.email)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != tc.n {
				t.Errorf("FindMembersByEmail(%q) = %d members, want %d", tc.email, len(ms), tc.n)
			}
		}
	})

	t.Run("IdPProvisionedNeedsSCIM", func(t *testing.T) {
		tg := newTarget(t)
		sb := tg.needSandbox(t)
		c := tg.client(t)
		ms, err := c.FindMembersByEmail(ctx, "john.smith@acme.test")
		if err != nil || len(ms) != 1 {
			t.Fatalf("find john: %v %v", ms, err)
		}
		john := ms[0]
		if !john.IdPProvisioned() {
			t.Fatalf("john not idp:provisioned: %+v", john.Flags)
		}
		err = c.DeleteMember(ctx, john.ID)
		if !errors.Is(err, sentry.ErrIdPManaged) || !errors.Is(err, sentry.ErrPermission) || sentry.IsTransient(err) {
			t.Fatalf("REST delete of idp member err = %v, want ErrIdPManaged", err)
		}
		var ae *sentry.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 403 || ae.Method != http.MethodDelete {
			t.Errorf("APIError = %+v", ae)
		}
		if err := c.SCIMDeleteUser(ctx, john.ID); err != nil {
			t.Fatal(err)
		}
		if _, ok := sb.Member("john.smith@acme.test"); ok {
			t.Error("john still a member")
		}
		if err := c.SCIMDeleteUser(ctx, john.ID); !errors.Is(err, sentry.ErrNotFound) {
			t.Errorf("second SCIM delete err = %v, want ErrNotFound", err)
		}
	})

	t.Run("SCIM", func(t *testing.T) {
		tg := newTarget(t)
		sb := tg.needSandbox(t)
		c := tg.client(t)
		users := collect(t, c.SCIMUsers(ctx, ""))
		if len(users) != len(sb.Members()) {
			t.Errorf("SCIMUsers = %d, sandbox members %d", len(users), len(sb.Members()))
		}
		us := collect(t, c.SCIMUsers(ctx, sentry.SCIMFilterEq("userName", "IVAN.PETROV@acme.test")))
		if len(us) != 1 || !strings.EqualFold(us[0].PrimaryEmail(), "ivan.petrov@acme.test") {
			t.Fatalf("SCIM filter = %+v", us)
		}
		u, err := c.SCIMGetUser(ctx, us[0].ID)
		if err != nil || u.ID != us[0].ID {
			t.Fatalf("SCIMGetUser = %+v, %v", u, err)
		}
		p, err := c.SCIMListUsers(ctx, "", 2, 3)
		if err != nil || len(p.Users) != 3 || p.TotalResults != len(users) || p.Users[0].ID != users[1].ID {
			t.Errorf("SCIMListUsers(2,3) = %+v, %v", p, err)
		}
		if err := c.SCIMDeactivateUser(ctx, us[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, ok := sb.Member("ivan.petrov@acme.test"); ok {
			t.Error("PATCH active=false left the member")
		}
		if _, err := c.SCIMGetUser(ctx, us[0].ID); !errors.Is(err, sentry.ErrNotFound) {
			t.Errorf("SCIMGetUser(deleted) err = %v", err)
		}
		groups := collect(t, c.SCIMGroups(ctx, "", false))
		if len(groups) == 0 {
			t.Fatal("no SCIM groups")
		}
		g, err := c.SCIMGetGroup(ctx, groups[0].ID)
		if err != nil || g.DisplayName != groups[0].DisplayName {
			t.Errorf("SCIMGetGroup = %+v, %v", g, err)
		}
		created, err := c.SCIMCreateUser(ctx, "scim.new@acme.test", "member")
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := sb.Member("scim.new@acme.test"); !ok || !v.Flags["idp:provisioned"] || v.ID != created.ID {
			t.Errorf("SCIM-created member = %+v", v)
		}
		if _, err := c.SCIMCreateUser(ctx, "olivia.owner@acme.test", ""); !errors.Is(err, sentry.ErrConflict) {
			t.Errorf("SCIM create existing err = %v, want ErrConflict", err)
		}
	})

	t.Run("JoinerMover", func(t *testing.T) {
		tg := newTarget(t)
		sb := tg.needSandbox(t)
		c := tg.client(t)
		contrib := "contributor"
		inv, err := c.InviteMember(ctx, sentry.InviteRequest{Email: "joiner@acme.test", OrgRole: "member",
			TeamRoles: []sentry.TeamRole{{TeamSlug: "payments", Role: &contrib}}})
		if err != nil {
			t.Fatal(err)
		}
		if !inv.Pending || inv.User != nil || inv.OrgRole != "member" {
			t.Errorf("invite = %+v", inv)
		}
		if _, err := c.InviteMember(ctx, sentry.InviteRequest{Email: "joiner@acme.test"}); !errors.Is(err, sentry.ErrBadRequest) {
			t.Errorf("duplicate invite err = %v, want ErrBadRequest", err)
		}
		if _, err := sb.AcceptInvite("joiner@acme.test"); err != nil {
			t.Fatal(err)
		}
		m, err := c.GetMember(ctx, inv.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(m.Teams, "payments") {
			t.Errorf("teams = %v", m.Teams)
		}
		added, err := c.AddMemberToTeam(ctx, m.ID, "data")
		if err != nil || !added {
			t.Fatalf("AddMemberToTeam = %v, %v", added, err)
		}
		added, err = c.AddMemberToTeam(ctx, m.ID, "data")
		if err != nil || added {
			t.Errorf("second AddMemberToTeam = %v, %v; want already a member", added, err)
		}
		if _, err := c.AddMemberToTeam(ctx, m.ID, "okta-engineering"); !errors.Is(err, sentry.ErrIdPManaged) {
			t.Errorf("add to idp team err = %v, want ErrIdPManaged", err)
		}
		stored, err := c.SetTeamRole(ctx, m.ID, "data", "admin")
		if err != nil || stored == nil || *stored != "admin" {
			t.Errorf("SetTeamRole = %v, %v", stored, err)
		}
		m, err = c.GetMember(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := c.UpdateMemberRole(ctx, m.ID, "manager", m.TeamRoles)
		if err != nil {
			t.Fatal(err)
		}
		if m2.OrgRole != "manager" {
			t.Errorf("org role = %q", m2.OrgRole)
		}
		v, _ := sb.Member("joiner@acme.test")
		if v.OrgRole != "manager" || len(v.Teams) != 2 {
			t.Errorf("sandbox view = %+v (team set must be kept)", v)
		}
		if err := c.RemoveMemberFromTeam(ctx, m.ID, "data"); err != nil {
			t.Fatal(err)
		}
		if v, _ := sb.Member("joiner@acme.test"); len(v.Teams) != 1 {
			t.Errorf("teams after removal = %v", v.Teams)
		}
	})

	t.Run("GuardsNeedAHuman", func(t *testing.T) {
		tg := newTarget(t)
		tg.needSandbox(t)
		c := tg.client(t)
		ms, err := c.FindMembersByEmail(ctx, "olivia.owner@acme.test")
		if err != nil || len(ms) != 1 {
			t.Fatalf("find owner: %v %v", ms, err)
		}
		// The service user is a manager: it cannot remove an owner.
		err = c.DeleteMember(ctx, ms[0].ID)
		if !errors.Is(err, sentry.ErrInsufficientRole) || sentry.IsTransient(err) {
			t.Errorf("delete owner err = %v, want ErrInsufficientRole", err)
		}
	})

	t.Run("TeamsAndProjects", func(t *testing.T) {
		tg := newTarget(t)
		tg.needSandbox(t)
		c := tg.client(t)
		tm, err := c.CreateTeam(ctx, "jml-test", "JML Test")
		if err != nil {
			t.Fatal(err)
		}
		if tm.Slug != "jml-test" {
			t.Errorf("team = %+v", tm)
		}
		if _, err := c.CreateTeam(ctx, "jml-test", "again"); !errors.Is(err, sentry.ErrConflict) {
			t.Errorf("duplicate team err = %v, want ErrConflict", err)
		}
		if err := c.AddProjectTeam(ctx, "ledger", "jml-test"); err != nil {
			t.Fatal(err)
		}
		ps := collect(t, c.TeamProjects(ctx, "jml-test"))
		if len(ps) != 1 || ps[0].Slug != "ledger" {
			t.Errorf("team projects = %+v", ps)
		}
		if err := c.RemoveProjectTeam(ctx, "ledger", "jml-test"); err != nil {
			t.Fatal(err)
		}
		// Deleting a team needs team:admin, which the daemon's token does not carry.
		if err := c.DeleteTeam(ctx, "jml-test"); !errors.Is(err, sentry.ErrPermission) {
			t.Errorf("DeleteTeam err = %v, want ErrPermission", err)
		}
	})

	t.Run("TokensFromAuditLog", func(t *testing.T) {
		tg := newTarget(t)
		tg.needSandbox(t)
		c := tg.client(t)
		jane, err := c.FindMembersByEmail(ctx, "jane.doe@acme.test")
		if err != nil || len(jane) != 1 {
			t.Fatal(err)
		}
		var created []string
		for e, err := range c.AuditLogs(ctx, sentry.AuditLogQuery{Event: "org-auth-token.create", ActorUserID: jane[0].UserID()}) {
			if err != nil {
				t.Fatal(err)
			}
			if e.ActorUserID() != jane[0].UserID() {
				t.Errorf("actor filter ignored: %+v", e.Actor)
			}
			created = append(created, e.Note)
		}
		if len(created) != 2 {
			t.Errorf("jane created %d tokens per the audit log, want 2: %v", len(created), created)
		}
		toks, err := c.ListOrgAuthTokens(ctx)
		if err != nil || len(toks) != 4 {
			t.Fatalf("tokens = %v, %v", toks, err)
		}
		if err := c.DeleteOrgAuthToken(ctx, toks[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteOrgAuthToken(ctx, toks[0].ID); !errors.Is(err, sentry.ErrNotFound) {
			t.Errorf("second token delete err = %v", err)
		}
	})
}

func TestPaginationStreams(t *testing.T) {
	t.Parallel()
	tg := newSandboxTarget(t, sentrytest.Options{RateLimit: -1,
		Seed: &sentrytest.Seed{
			Org:      sentrytest.SeedOrg{Slug: "acme", SAML: true, SCIM: true},
			Members:  []sentrytest.SeedMember{{Email: "jml-bot@acme.test", OrgRole: "manager"}},
			Generate: &sentrytest.SeedGenerate{Members: 250, Teams: 120, PendingEvery: 7},
		}})
	c := tg.client(t)
	ctx := context.Background()
	tg.sb.ResetStats()
	ms := collect(t, c.ListMembers(ctx, ""))
	if len(ms) != 251 {
		t.Errorf("listed %d members, want 251", len(ms))
	}
	if n := tg.sb.Stats().TotalRequests; n != 3 {
		t.Errorf("ListMembers took %d requests, want 3", n)
	}
	// Early stop fetches no further pages.
	tg.sb.ResetStats()
	for range c.ListMembers(ctx, "") {
		break
	}
	if n := tg.sb.Stats().TotalRequests; n != 1 {
		t.Errorf("early break took %d requests, want 1", n)
	}
	teams := collect(t, c.ListTeams(ctx, ""))
	if len(teams) != 120 {
		t.Errorf("listed %d teams, want 120", len(teams))
	}
	us := collect(t, c.SCIMUsers(ctx, ""))
	if len(us) != 251 {
		t.Errorf("SCIM listed %d users, want 251", len(us))
	}
	gs := collect(t, c.SCIMGroups(ctx, "", true))
	if len(gs) != 120 {
		t.Errorf("SCIM listed %d groups, want 120", len(gs))
	}
}

// recorder observes the client's HTTP traffic (it does not answer anything).
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []seenReq
}

type seenReq struct {
	sent   time.Time // when the client handed the request to the transport
	at     time.Time // when the response came back
	method string
	path   string
	status int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := time.Now()
	resp, err := r.base.RoundTrip(req)
	s := seenReq{sent: sent, at: time.Now(), method: req.Method, path: req.URL.Path}
	if resp != nil {
		s.status = resp.StatusCode
	}
	r.mu.Lock()
	r.seen = append(r.seen, s)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) requests() []seenReq {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func TestRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	newT := func(t *testing.T) (target, *sentry.Client, *recorder, *bytes.Buffer) {
		tg := newSandboxTarget(t, sentrytest.Options{})
		rec := &recorder{base: http.DefaultTransport}
		var logs bytes.Buffer
		c := tg.client(t, func(cfg *sentry.Config) {
			cfg.HTTPClient = &http.Client{Transport: rec, Timeout: 2 * time.Second}
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		return tg, c, rec, &logs
	}
	memberPattern := "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/"

	t.Run("GET5xxRetried", func(t *testing.T) {
		t.Parallel()
		tg, c, rec, _ := newT(t)
		me, err := c.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tg.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Method: "GET", Status: 503, Count: 2})
		if _, err := c.GetMember(ctx, me.ID); err != nil {
			t.Fatalf("GetMember after 2 faults: %v", err)
		}
		if n := len(rec.requests()); n != 4 {
			t.Errorf("%d requests, want 4 (me + 2 failures + success)", n)
		}
	})

	t.Run("DropRetried", func(t *testing.T) {
		t.Parallel()
		tg, c, _, _ := newT(t)
		tg.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Method: "GET", Kind: sentrytest.FaultDrop, Count: 1})
		if _, err := c.Me(ctx); err != nil {
			t.Fatalf("Me after a dropped connection: %v", err)
		}
	})

	t.Run("DELETEAppliedThen500", func(t *testing.T) {
		t.Parallel()
		tg, c, _, _ := newT(t)
		v, _ := tg.sb.Member("jane.doe@acme.test")
		tg.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Method: "DELETE", Status: 502, Count: 1, After: true})
		err := c.DeleteMember(ctx, v.ID)
		if err != nil && !errors.Is(err, sentry.ErrNotFound) {
			t.Fatalf("DeleteMember = %v, want nil or ErrNotFound (already done)", err)
		}
		if _, ok := tg.sb.Member("jane.doe@acme.test"); ok {
			t.Error("jane still a member")
		}
	})

	t.Run("POSTNotRepeated", func(t *testing.T) {
		t.Parallel()
		tg, c, rec, _ := newT(t)
		tg.sb.InjectFault(sentrytest.Fault{Pattern: "/api/0/organizations/{organization_id_or_slug}/members/", Method: "POST", Status: 500, Count: 1, After: true})
		_, err := c.InviteMember(ctx, sentry.InviteRequest{Email: "once@acme.test"})
		if !sentry.IsTransient(err) {
			t.Fatalf("invite err = %v, want a transient 500", err)
		}
		if n := len(rec.requests()); n != 1 {
			t.Errorf("POST sent %d times, want 1", n)
		}
	})

	t.Run("RateLimitWaitedOut", func(t *testing.T) {
		t.Parallel()
		tg, c, rec, _ := newT(t)
		tg.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Method: "GET", Kind: sentrytest.FaultRateLimit, Count: 1})
		if _, err := c.Me(ctx); err != nil {
			t.Fatalf("Me after a 429: %v", err)
		}
		rs := rec.requests()
		if len(rs) != 2 || rs[0].status != 429 {
			t.Fatalf("requests = %+v", rs)
		}
		if rs[1].at.Unix() == rs[0].at.Unix() {
			t.Errorf("retried within the limited window: %v then %v", rs[0].at, rs[1].at)
		}
	})

	t.Run("InviteQuotaNotRetried", func(t *testing.T) {
		t.Parallel()
		tg, c, rec, _ := newT(t)
		tg.sb.InjectFault(sentrytest.Fault{Pattern: "/api/0/organizations/{organization_id_or_slug}/members/", Method: "POST",
			Status: 429, Body: `{"detail":"You are being rate limited for too many invitations."}`, Count: 1})
		_, err := c.InviteMember(ctx, sentry.InviteRequest{Email: "quota@acme.test"})
		if !errors.Is(err, sentry.ErrInviteQuota) || errors.Is(err, sentry.ErrRateLimited) || sentry.IsTransient(err) {
			t.Fatalf("err = %v, want ErrInviteQuota only", err)
		}
		if n := len(rec.requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})

	t.Run("RetriesBounded", func(t *testing.T) {
		t.Parallel()
		tg, c, rec, _ := newT(t)
		tg.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Method: "GET", Status: 500})
		c2 := tg.client(t, func(cfg *sentry.Config) {
			cfg.HTTPClient = &http.Client{Transport: rec}
			cfg.MaxRetries = 2
		})
		_ = c
		_, err := c2.Me(ctx)
		if !sentry.IsTransient(err) {
			t.Fatalf("err = %v", err)
		}
		if n := len(rec.requests()); n != 3 {
			t.Errorf("%d requests, want 3", n)
		}
	})

	t.Run("CancelStopsRetrying", func(t *testing.T) {
		t.Parallel()
		tg, c, _, _ := newT(t)
		tg.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Method: "GET", Status: 500})
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Me(cctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("took %v after the deadline", time.Since(start))
		}
	})

	t.Run("TokenNeverLogged", func(t *testing.T) {
		t.Parallel()
		tg, c, _, logs := newT(t)
		tg.sb.InjectFault(sentrytest.Fault{Pattern: "", Status: 503, Count: 3})
		tg.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Kind: sentrytest.FaultRateLimit, Count: 1})
		if _, err := c.Check(ctx); err != nil {
			t.Logf("Check: %v", err)
		}
		_ = c.DeleteMember(ctx, "999999999")
		_, err := c.FindMembersByEmail(ctx, "jane.doe@acme.test")
		if err != nil {
			t.Fatal(err)
		}
		if logs.Len() == 0 {
			t.Fatal("nothing logged; the test proves nothing")
		}
		if strings.Contains(logs.String(), sandboxToken) || strings.Contains(logs.String(), "sandbox-secret") {
			t.Errorf("token in logs:\n%s", logs.String())
		}
	})
}

func TestSpans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	tg := newSandboxTarget(t, sentrytest.Options{})
	c := tg.client(t, func(cfg *sentry.Config) { cfg.TracerProvider = tp })
	v, _ := tg.sb.Member("jane.doe@acme.test")
	tg.sb.InjectFault(sentrytest.Fault{Pattern: "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/", Method: "DELETE", Kind: sentrytest.FaultRateLimit, Count: 1})
	if err := c.DeleteMember(sentry.WithPriority(ctx, sentry.PriorityLeaver), v.ID); err != nil {
		t.Fatal(err)
	}
	var logical sdktrace.ReadOnlySpan
	httpSpans := 0
	for _, s := range sr.Ended() {
		switch {
		case s.Name() == "sentry.DeleteMember":
			logical = s
		case strings.HasPrefix(s.Name(), "DELETE "):
			httpSpans++
		}
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.String(), "sandbox-secret") {
				t.Errorf("token in span %s attribute %s", s.Name(), a.Key)
			}
		}
	}
	if logical == nil {
		t.Fatal("no sentry.DeleteMember span")
	}
	if httpSpans != 2 {
		t.Errorf("%d HTTP client spans, want 2 (429 then 204)", httpSpans)
	}
	var events []string
	for _, e := range logical.Events() {
		events = append(events, e.Name)
	}
	if !slices.Contains(events, "sentry.rate_limited") || !slices.Contains(events, "sentry.rate_limit.wait") {
		t.Errorf("events = %v, want the 429 and the wait", events)
	}
}

// A member search carries the person's email in its query: no span keeps it
// (url.full is written with the query values redacted).
func TestSpansKeepNoEmail(t *testing.T) {
	t.Parallel()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	tg := newSandboxTarget(t, sentrytest.Options{})
	c := tg.client(t, func(cfg *sentry.Config) { cfg.TracerProvider = tp })
	ms, err := c.FindMembersByEmail(context.Background(), "Jane.Doe@acme.test")
	if err != nil || len(ms) != 1 {
		t.Fatalf("find: %v %v", ms, err)
	}
	urls := 0
	for _, s := range sr.Ended() {
		for _, a := range s.Attributes() {
			v := strings.ToLower(a.Value.String())
			if strings.Contains(v, "jane") || strings.Contains(v, "acme.test") {
				t.Errorf("span %s attribute %s = %q carries the email", s.Name(), a.Key, a.Value.String())
			}
			if a.Key == "url.full" {
				urls++
				if !strings.Contains(v, "query=redacted") {
					t.Errorf("span %s url.full = %q, want the query value redacted", s.Name(), a.Value.String())
				}
			}
		}
	}
	if urls == 0 {
		t.Fatal("no HTTP client span with url.full: the check above proved nothing")
	}
}

// TestLoad: many concurrent callers on one (token, pattern, method) never exceed
// the sandbox's limit after the first window, and all finish.
func TestLoad(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("load test")
	}
	const limit, calls, workers = 15, 60, 30
	tg := newSandboxTarget(t, sentrytest.Options{RateLimit: limit, ConcurrentLimit: 10, Latency: 5 * time.Millisecond})
	rec := &recorder{base: http.DefaultTransport}
	const guard = 50 * time.Millisecond // the LocalBudget's default
	c := tg.client(t, func(cfg *sentry.Config) {
		cfg.HTTPClient = &http.Client{Transport: rec}
		cfg.Budget = sentry.NewLocalBudget(sentry.LocalBudgetOptions{Guard: guard})
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	jobs := make(chan int)
	var mu sync.Mutex
	took := map[sentry.Priority][]time.Duration{}
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := sentry.PriorityReconcile
				if i%5 == 0 {
					p = sentry.PriorityLeaver
				}
				t0 := time.Now()
				ms, err := c.FindMembersByEmail(sentry.WithPriority(ctx, p), "jane.doe@acme.test")
				mu.Lock()
				took[p] = append(took[p], time.Since(t0))
				mu.Unlock()
				if err != nil {
					errs <- err
				} else if len(ms) != 1 {
					errs <- fmt.Errorf("found %d members", len(ms))
				}
			}
		}()
	}
	for i := range calls {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rs := rec.requests()
	first := rs[0].at.Unix()
	perSec := map[int64]int{}
	late := 0
	for _, r := range rs {
		if r.status == 429 && r.at.Unix() > first {
			// The budget counts a request in the window it was granted in (and
			// the next one too within the guard); the sandbox counts it in the
			// window it arrived in. A request whose transit crossed a window's
			// start by more than the guard (a starved CPU under -race) is one
			// the budget cannot see, and can make the next window overflow.
			// Any other 429 after the first window is the budget's fault.
			if w, ok := lateArrival(rs, r, first, guard); ok {
				late++
				t.Logf("429 at %v: a request sent before %v - %v arrived after it", r.at, time.Unix(w, 0), guard)
				continue
			}
			t.Errorf("429 after the first window at %v (sent %v), and no request crossed a window start by more than the guard", r.at, r.sent)
		}
		if r.status != 429 {
			perSec[r.at.Unix()]++
		}
	}
	for s, n := range perSec {
		if n > limit {
			t.Errorf("second %d: %d successful requests, limit %d", s, n, limit)
		}
	}
	mean := func(ds []time.Duration) time.Duration {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return sum / time.Duration(max(len(ds), 1))
	}
	if l, r := mean(took[sentry.PriorityLeaver]), mean(took[sentry.PriorityReconcile]); l >= r {
		t.Errorf("leaver calls took %v on average, reconcile calls %v: priority not honoured", l, r)
	}
	st := tg.sb.Stats()
	// calls requests at 15/s take at least 4 windows; allow slack for 2 cores.
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("took %v", d)
	}
	t.Logf("%d requests, %d rate limited (%d after a late arrival), %v", st.TotalRequests, st.RateLimited, late, time.Since(start))
}

// lateArrival reports a window start w after first, within r's own transit,
// that some request's transit crossed more than guard after it was sent:
// the sandbox may have counted that request in w while the budget counted
// it in the window before.
func lateArrival(rs []seenReq, r seenReq, first int64, guard time.Duration) (int64, bool) {
	for w := max(first+1, r.sent.Unix()); w <= r.at.Unix(); w++ {
		start := time.Unix(w, 0)
		for _, q := range rs {
			if q.sent.Before(start.Add(-guard)) && !q.at.Before(start) {
				return w, true
			}
		}
	}
	return 0, false
}
