package reconcile_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// teamStructurePolicy declares teams over the demo seed's structure:
//
//	search            missing: created and linked to web-frontend and ledger
//	payments          checkout-api+ledger → checkout-api+etl-pipeline
//	mobile            no projects key: its links are left alone
//	platform          web-frontend+auth-gateway → web-frontend (no-such-project is only noted)
//	okta-engineering  IdP-provisioned: never changed although projects are declared
//
// security, data and architecture are not declared at all. The directory is
// left empty, so every member is an orphan reported (orphans: report) and the
// only changes a run makes are team structure.
const teamStructurePolicy = `
teams:
  - slug: search
    name: Search
    projects: [web-frontend, ledger]
  - slug: payments
    projects: [checkout-api, etl-pipeline]
  - slug: mobile
  - slug: platform
    projects: [web-frontend, no-such-project]
  - slug: okta-engineering
    projects: [checkout-api]
`

// teamProjectLinks reads, through the sandbox's API, every team and the
// projects it is linked to (team slug → sorted project slugs).
func teamProjectLinks(t *testing.T, h *harness) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	for tm, err := range h.client.ListTeams(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		ps := []string{}
		for p, err := range h.client.TeamProjects(ctx, tm.Slug) {
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p.Slug)
		}
		slices.Sort(ps)
		out[tm.Slug] = ps
	}
	return out
}

func projectSlugs(t *testing.T, h *harness) []string {
	t.Helper()
	var out []string
	for p, err := range h.client.ListProjects(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Slug)
	}
	slices.Sort(out)
	return out
}

// structureWrites counts the team-structure write requests in the request log.
func structureWrites(st sentrytest.Stats) int {
	return st.Count(sentrytest.PatternTeams, "POST") + st.Count(sentrytest.PatternProjectTeam, "POST") +
		st.Count(sentrytest.PatternProjectTeam, "DELETE") + st.Count(sentrytest.PatternTeam, "DELETE") +
		st.Count(sentrytest.PatternTeam, "PUT")
}

func TestTeamStructureConvergesToTheDeclaration(t *testing.T) {
	h := mustHarness(t, sentrytest.DemoSeed(), teamStructurePolicy)
	ctx := context.Background()
	before := teamProjectLinks(t, h)
	projectsBefore := projectSlugs(t, h)
	if _, ok := before["search"]; ok {
		t.Fatal("seed: team search exists already")
	}

	// A dry run plans the six changes and makes none.
	h.sb.ResetStats()
	dry, err := h.rec.Run(ctx, reconcile.RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Counts.Update != 6 || dry.Counts.Remove != 0 || dry.Counts.Invite != 0 {
		t.Fatalf("dry run counts = %+v, want 6 updates (1 team, 3 links added, 2 removed)", dry.Counts)
	}
	if st := h.sb.Stats(); len(st.Mutations) != 0 || structureWrites(st) != 0 {
		t.Fatalf("dry run changed Sentry: %v", st.Mutations)
	}

	h.sb.ResetStats()
	sum, err := h.rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != state.RunApplied || sum.Failed != 0 || sum.Applied != 6 {
		t.Fatalf("summary = %+v, want applied with 6 steps and no failure", sum)
	}
	muts := h.sb.Stats().Mutations
	want := map[string]map[string]int{
		"team.create": {"search": 1},
		// Sentry makes the creator a member of the team it creates
		// (src/sentry/core/endpoints/organization_teams.py); the service
		// user leaves it.
		"member.leave-team":   {"jml-bot@acme.test": 1},
		"project-team.add":    {"web-frontend/search": 1, "ledger/search": 1, "etl-pipeline/payments": 1},
		"project-team.remove": {"ledger/payments": 1, "auth-gateway/platform": 1},
		// Sentry adds the user who creates a team to it (null team role):
		// src/sentry/core/endpoints/organization_teams.py (post).
		"member.join-team": {"jml-bot@acme.test": 1},
	}
	if !mapsEqual(muts, want) {
		t.Errorf("mutations = %v\nwant        %v", muts, want)
	}

	after := teamProjectLinks(t, h)
	wantLinks := map[string][]string{
		"search":           {"ledger", "web-frontend"},       // created with its declared links
		"payments":         {"checkout-api", "etl-pipeline"}, // matched to the declaration
		"platform":         {"web-frontend"},                 // auth-gateway unlinked; no-such-project not created
		"mobile":           before["mobile"],                 // declared without projects: untouched
		"okta-engineering": before["okta-engineering"],       // IdP-provisioned: untouched
		"security":         before["security"],               // undeclared: untouched
		"data":             before["data"],                   // undeclared: untouched
		"architecture":     before["architecture"],           // undeclared: untouched
	}
	if len(after) != len(wantLinks) {
		t.Errorf("teams after = %v, want exactly %d (none deleted, one created)", after, len(wantLinks))
	}
	for slug, wl := range wantLinks {
		got, ok := after[slug]
		if !ok {
			t.Errorf("team %s is gone", slug)
			continue
		}
		if !slices.Equal(got, wl) {
			t.Errorf("team %s projects = %v, want %v", slug, got, wl)
		}
	}
	// The service user is in no team it joined only by creating it.
	if m, ok := h.sb.Member("jml-bot@acme.test"); !ok {
		t.Error("the service user is gone")
	} else if _, in := m.Teams["search"]; in {
		t.Errorf("the service user is still in team search it created: %+v", m)
	}
	// Sanity: the seed really had links that would have been touched.
	if len(before["mobile"]) == 0 || len(before["security"]) == 0 || !slices.Contains(before["platform"], "auth-gateway") {
		t.Fatalf("seed changed: %v", before)
	}
	// Projects are never created or deleted (even ones left without a team).
	if got := projectSlugs(t, h); !slices.Equal(got, projectsBefore) {
		t.Errorf("projects = %v, want %v", got, projectsBefore)
	}
	var notes []string
	for _, r := range sum.Reports {
		if r.Kind == "note" {
			notes = append(notes, r.Detail)
		}
	}
	joined := strings.Join(notes, "\n")
	if !strings.Contains(joined, "okta-engineering is IdP-provisioned") || !strings.Contains(joined, "no-such-project does not exist") {
		t.Errorf("notes = %q, want the IdP team and the missing project reported", notes)
	}

	// Idempotence: a second run plans and makes no change.
	h.sb.ResetStats()
	again, err := h.rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := h.sb.Stats()
	if again.Counts.Update != 0 || again.Applied != 0 || len(st.Mutations) != 0 || structureWrites(st) != 0 {
		t.Fatalf("second run: counts = %+v applied = %d mutations = %v writes = %d", again.Counts, again.Applied, st.Mutations, structureWrites(st))
	}
}

// An IdP-provisioned team is never changed, even when the declaration
// differs from it in every way (links to add and links to remove).
func TestTeamStructureLeavesIdPTeamsAlone(t *testing.T) {
	seed := sentrytest.DemoSeed()
	seed.Projects = append(seed.Projects, sentrytest.SeedProject{Slug: "okta-app", Teams: []string{"okta-engineering"}})
	h := mustHarness(t, seed, `
teams:
  - slug: okta-engineering
    name: Renamed
    projects: [checkout-api]
`)
	h.sb.ResetStats()
	sum, err := h.rec.Run(context.Background(), reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := h.sb.Stats()
	if len(st.Mutations) != 0 || structureWrites(st) != 0 || sum.Counts.Update != 0 {
		t.Fatalf("an IdP-provisioned team was changed: counts %+v, mutations %v", sum.Counts, st.Mutations)
	}
	if got := teamProjectLinks(t, h)["okta-engineering"]; !slices.Equal(got, []string{"okta-app"}) {
		t.Fatalf("okta-engineering projects = %v, want [okta-app]", got)
	}
}

// An approval re-checks a stored create_team: a team someone created in the
// meantime is skipped, not failed, and its links are still applied.
func TestTeamStructureApprovalSkipsATeamCreatedMeanwhile(t *testing.T) {
	seed := sentrytest.DemoSeed()
	seed.Members = append(seed.Members,
		sentrytest.SeedMember{Email: "gone-1@acme.test"}, sentrytest.SeedMember{Email: "gone-2@acme.test"})
	h := mustHarness(t, seed, `
teams:
  - slug: search
    projects: [ledger]
reconcile: {orphans: remove, max_removals: 1}
protected: ["re:^[a-z]+\\.[a-z]+@acme\\.test$"]
`)
	ctx := context.Background()
	// gone-1 and gone-2 are the only unprotected orphans: two removals halt the run.
	sum, err := h.rec.Run(ctx, reconcile.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != state.RunHalted || sum.Counts.Remove != 2 {
		t.Fatalf("summary = %+v, want halted with 2 removals", sum)
	}
	if _, err := h.client.CreateTeam(ctx, "search", "Search"); err != nil {
		t.Fatal(err)
	}
	app, err := h.rec.Approve(ctx, sum.RunID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if app.Failed != 0 || app.Skipped != 1 {
		t.Fatalf("approval = %+v, want the create_team skipped and nothing failed", app)
	}
	if got := teamProjectLinks(t, h)["search"]; !slices.Equal(got, []string{"ledger"}) {
		t.Fatalf("search projects = %v, want [ledger]", got)
	}
}

func mapsEqual(a, b map[string]map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || len(av) != len(bv) {
			return false
		}
		for kk, n := range av {
			if bv[kk] != n {
				return false
			}
		}
	}
	return true
}
