package reconcile_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// hygieneTokens: name → the reasons (substrings) token hygiene must give for
// it under unused_days: 90 and max_age_days: 365; nil = healthy.
var hygieneTokens = map[string][]string{
	"fresh-ci":     nil,                                          // used today, 10 days old
	"new-unused":   nil,                                          // never used, but only 10 days old
	"no-creator":   nil,                                          // creator unknown: not checked
	"just-in-time": nil,                                          // last used 89 days ago, 364 days old
	"stale-deploy": {"unused for more than 90 days"},             // last used 91 days ago
	"never-used":   {"never used in 90 days"},                    // created 120 days ago, never used
	"ancient-busy": {"older than 365 days"},                      // used today, 366 days old
	"orphaned-ci":  {"is no longer a member"},                    // creator left
	"stale-orphan": {"is no longer a member", "unused for more"}, // both
}

func hygieneSeed() *sentrytest.Seed {
	seed := sentrytest.DemoSeed()
	seed.Members = append(seed.Members, sentrytest.SeedMember{Email: "gone.creator@acme.test", OrgRole: "member"})
	now := time.Now()
	days := func(n int) time.Time { return now.Add(-time.Duration(n) * 24 * time.Hour) }
	seed.OrgAuthTokens = []sentrytest.SeedOrgAuthToken{
		{Name: "fresh-ci", CreatedBy: "jane.doe@acme.test", Created: days(10), LastUsed: now},
		{Name: "new-unused", CreatedBy: "bob.martin@acme.test", Created: days(10)},
		{Name: "no-creator", Created: days(10), LastUsed: now},
		{Name: "just-in-time", CreatedBy: "olivia.owner@acme.test", Created: days(364), LastUsed: days(89)},
		{Name: "stale-deploy", CreatedBy: "jane.doe@acme.test", Created: days(200), LastUsed: days(91)},
		{Name: "never-used", CreatedBy: "bob.martin@acme.test", Created: days(120)},
		{Name: "ancient-busy", CreatedBy: "olivia.owner@acme.test", Created: days(366), LastUsed: now},
		{Name: "orphaned-ci", CreatedBy: "gone.creator@acme.test", Created: days(30), LastUsed: now},
		{Name: "stale-orphan", CreatedBy: "gone.creator@acme.test", Created: days(200), LastUsed: days(150)},
	}
	return seed
}

// setupHygiene returns the harness and the user id of gone.creator, who left.
func setupHygiene(t *testing.T, action string) (*harness, string) {
	t.Helper()
	h := mustHarness(t, hygieneSeed(), "token_hygiene: {unused_days: 90, max_age_days: 365, action: "+action+"}\n")
	// gone.creator left (by hand); their tokens outlived them.
	gc := h.member("gone.creator@acme.test")
	if err := h.client.DeleteMember(context.Background(), gc.ID); err != nil {
		t.Fatal(err)
	}
	h.sb.ResetStats()
	return h, gc.UserID
}

func unhealthyTokens() []string {
	var out []string
	for name, why := range hygieneTokens {
		if why != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// activeTokens: name → active, from the sandbox's own view.
func activeTokens(h *harness) map[string]bool {
	out := map[string]bool{}
	for _, tk := range h.sb.OrgAuthTokens() {
		out[tk.Name] = tk.Active
	}
	return out
}

// checkFindings asserts fs names exactly the unhealthy tokens, each with its reasons and action.
func checkFindings(t *testing.T, fs []reconcile.TokenFinding, action string) map[string]reconcile.TokenFinding {
	t.Helper()
	byName := map[string]reconcile.TokenFinding{}
	for _, f := range fs {
		byName[f.Name] = f
	}
	if got := slices.Sorted(maps.Keys(byName)); !slices.Equal(got, unhealthyTokens()) || len(fs) != len(byName) {
		t.Fatalf("findings = %v, want %v", got, unhealthyTokens())
	}
	for name, f := range byName {
		if f.Action != action {
			t.Errorf("%s: action = %q, want %q", name, f.Action, action)
		}
		if len(f.Reasons) != len(hygieneTokens[name]) {
			t.Errorf("%s: reasons = %q, want %d matching %q", name, f.Reasons, len(hygieneTokens[name]), hygieneTokens[name])
			continue
		}
		for _, want := range hygieneTokens[name] {
			if !slices.ContainsFunc(f.Reasons, func(r string) bool { return strings.Contains(r, want) }) {
				t.Errorf("%s: reasons = %q, want one containing %q", name, f.Reasons, want)
			}
		}
	}
	return byName
}

func TestTokenHygieneReportRevokesNothing(t *testing.T) {
	h, goneUser := setupHygiene(t, "report")
	fs, err := h.rec.TokenHygiene(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	found := checkFindings(t, fs, "report")
	for name, f := range found {
		if f.Result != "" {
			t.Errorf("%s: result = %q in report mode", name, f.Result)
		}
	}
	// The orphaned tokens name the creator who left.
	for _, name := range []string{"orphaned-ci", "stale-orphan"} {
		if found[name].Creator != goneUser || goneUser == "" {
			t.Errorf("%s: creator = %q, want gone.creator's user %q", name, found[name].Creator, goneUser)
		}
	}
	st := h.sb.Stats()
	if n := st.Count(sentrytest.PatternOrgAuthToken, "DELETE"); n != 0 || len(st.Mutations) != 0 {
		t.Fatalf("report mode: %d token deletes, mutations %v", n, st.Mutations)
	}
	for name, active := range activeTokens(h) {
		if !active {
			t.Errorf("token %s was revoked in report mode", name)
		}
	}
}

func TestTokenHygieneRevokesExactlyTheUnhealthy(t *testing.T) {
	h, _ := setupHygiene(t, "revoke")
	ctx := context.Background()

	// A dry run of revoke mode names them and revokes nothing.
	fs, err := h.rec.TokenHygiene(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	checkFindings(t, fs, "revoke")
	if st := h.sb.Stats(); st.Count(sentrytest.PatternOrgAuthToken, "DELETE") != 0 {
		t.Fatal("a dry run revoked tokens")
	}

	fs, err = h.rec.TokenHygiene(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range checkFindings(t, fs, "revoke") {
		if f.Result != "done" {
			t.Errorf("%s: result = %q, want done", name, f.Result)
		}
	}
	for name, active := range activeTokens(h) {
		if healthy := hygieneTokens[name] == nil; active != healthy {
			t.Errorf("token %s active = %v, want %v", name, active, healthy)
		}
	}
	if n := h.sb.Stats().Count(sentrytest.PatternOrgAuthToken, "DELETE"); n != len(unhealthyTokens()) {
		t.Errorf("%d token deletes, want %d", n, len(unhealthyTokens()))
	}
	// Converged: the next check finds nothing.
	again, err := h.rec.TokenHygiene(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Fatalf("second check = %+v, want no findings", again)
	}
}

// The full reconcile applies the same rules to the tokens it read: reports in
// report mode, revocations in revoke mode.
func TestReconcileTokenHygiene(t *testing.T) {
	for _, action := range []string{"report", "revoke"} {
		t.Run(action, func(t *testing.T) {
			h, _ := setupHygiene(t, action)
			h.pol.Protected = []string{"re:.*"} // no orphan noise: only token findings
			sum, err := h.rec.Run(context.Background(), reconcile.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Status != state.RunApplied || sum.Failed != 0 {
				t.Fatalf("summary = %+v", sum)
			}
			ids := map[string]string{}
			for _, tk := range h.sb.OrgAuthTokens() {
				ids[tk.ID] = tk.Name
			}
			var reported []string
			for _, r := range sum.Reports {
				if r.Kind == "token" {
					reported = append(reported, ids[r.TokenID])
					for _, want := range hygieneTokens[ids[r.TokenID]] {
						if !strings.Contains(r.Detail, want) {
							t.Errorf("report %q, want it to contain %q", r.Detail, want)
						}
					}
				}
			}
			slices.Sort(reported)
			if !slices.Equal(reported, unhealthyTokens()) {
				t.Errorf("reported tokens = %v, want %v", reported, unhealthyTokens())
			}
			for name, active := range activeTokens(h) {
				want := action == "report" || hygieneTokens[name] == nil
				if active != want {
					t.Errorf("%s mode: token %s active = %v, want %v", action, name, active, want)
				}
			}
			if action == "revoke" && sum.Applied != len(unhealthyTokens()) {
				t.Errorf("applied = %d, want %d revocations", sum.Applied, len(unhealthyTokens()))
			}
		})
	}
}
