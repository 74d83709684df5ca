package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// TestJobsDetachAndFollow: `jml reconcile --detach` returns a job at once;
// `jml jobs` lists it, `jml jobs wait` prints its finished run, and the run is
// in `jml runs`. Without --detach the CLI prints the finished run as before.
func TestJobsDetachAndFollow(t *testing.T) {
	sys := mustRunMain(t, "")
	v, err := runCLI(t, sys, "reconcile", "--dry-run", "--detach")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := v["job_id"].(string)
	if !strings.HasPrefix(id, "job_") || v["kind"] != "reconcile" || v["operator"] != "local" {
		t.Fatalf("detached reconcile: %v", v)
	}
	list, err := runCLI(t, sys, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if js, _ := list["jobs"].([]any); len(js) != 1 || js[0].(map[string]any)["job_id"] != id {
		t.Fatalf("jobs: %v", list)
	}
	done, err := runCLI(t, sys, "jobs", "wait", id)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := done["result"].(map[string]any)
	if done["state"] != "succeeded" || res["status"] != "planned" || res["run_id"] == "" {
		t.Fatalf("jobs wait: %v", done)
	}
	runs, err := runCLI(t, sys, "runs")
	if err != nil {
		t.Fatal(err)
	}
	if rs, _ := runs["runs"].([]any); len(rs) != 1 || rs[0].(map[string]any)["run_id"] != res["run_id"] ||
		rs[0].(map[string]any)["trigger"] != "operator:local" {
		t.Fatalf("runs: %v", runs)
	}
	// Waiting (the default) prints the finished run, as before jobs.
	v, err = runCLI(t, sys, "reconcile", "--dry-run")
	if err != nil || v["status"] != "planned" || v["run_id"] == "" {
		t.Fatalf("reconcile --dry-run: %v %v", v, err)
	}
	// A finished job cannot be cancelled; an unknown one is a 404.
	if _, err := runCLI(t, sys, "jobs", "cancel", id); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("cancel a finished job: %v", err)
	}
	if _, err := runCLI(t, sys, "jobs", "show", "job_nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("show an unknown job: %v", err)
	}
}

// TestRunsHaltedFirstWithReason: halted runs come first, with the brake they
// crossed, whatever their age; the text says how to approve.
func TestRunsHaltedFirstWithReason(t *testing.T) {
	sys := mustRunMain(t, "")
	ctx := context.Background()
	js, _ := jetstream.New(sys.nc)
	recs, err := jsstate.Open(ctx, js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, r := range []state.ReconcileRun{
		{ID: "run_old_halted", StartedAt: now.Add(-3 * time.Hour), Status: state.RunHalted, ExpiresAt: now.Add(time.Hour),
			Reason: "40 removals exceed reconcile.max_removals 25", Counts: map[string]int{"remove": 40}},
		{ID: "run_new_applied", StartedAt: now.Add(-time.Hour), Status: state.RunApplied, Trigger: "schedule"},
		{ID: "run_mid_planned", StartedAt: now.Add(-2 * time.Hour), Status: state.RunPlanned},
	} {
		if err := recs.Runs.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	v, err := runCLI(t, sys, "runs")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range v["runs"].([]any) {
		ids = append(ids, r.(map[string]any)["run_id"].(string))
	}
	if strings.Join(ids, ",") != "run_old_halted,run_new_applied,run_mid_planned" {
		t.Fatalf("runs order %v", ids)
	}
	if r := v["runs"].([]any)[0].(map[string]any); r["reason"] != "40 removals exceed reconcile.max_removals 25" {
		t.Fatalf("halted run %v", r)
	}
	var out bytes.Buffer
	if err := dispatch(ctx, []string{"runs"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "halted: 40 removals exceed") || !strings.Contains(out.String(), "jml approve run_old_halted") {
		t.Fatalf("runs text:\n%s", out.String())
	}
}

// TestPendingListAndCancel: a future-dated leaver is listed by `jml pending`
// and by the person's plan (not "in sync"); `jml pending cancel` removes it,
// with an evidence record naming the operator, and the member stays.
func TestPendingListAndCancel(t *testing.T) {
	sys := mustRunMain(t, "")
	sb := sys.sandbox
	c := newSignedClient(t, sys)
	email := plainMember(t, sb, "jane.doe@acme.test")
	at := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	body := fmt.Appendf(nil, `{"type":"leaver","occurred_at":%q,"effective_at":%q,"person":{"id":"E-P1","email":%q,"status":"terminated"}}`,
		time.Now().UTC().Format(time.RFC3339), at, email)
	if r := c.send("msg_pending_1", body); r.status != http.StatusAccepted {
		t.Fatalf("future-dated leaver: %d", r.status)
	}
	var p []any
	eventually(t, "the change is pending", func() bool {
		v, err := runCLI(t, sys, "pending")
		p, _ = v["pending"].([]any)
		return err == nil && len(p) == 1
	})
	first := p[0].(map[string]any)
	if first["email"] != email || first["status"] != "terminated" || first["field"] == "" {
		t.Fatalf("pending %v", first)
	}
	id := first["id"].(string)
	// The person's plan shows it, and --detailed-exitcode says changes are pending.
	var out bytes.Buffer
	err := dispatch(context.Background(), []string{"plan", "--email", email, "--detailed-exitcode"}, &out, &out)
	if exitCode(err) != exitChanges || !strings.Contains(out.String(), "pending: leaver sets") || !strings.Contains(out.String(), id) {
		t.Fatalf("plan with a pending change: exit %d %v\n%s", exitCode(err), err, out.String())
	}
	v, err := runCLI(t, sys, "pending", "cancel", id)
	if err != nil {
		t.Fatal(err)
	}
	if v["cancelled_by"] != "local" {
		t.Fatalf("cancel: %v", v)
	}
	if v, _ := runCLI(t, sys, "pending"); len(v["pending"].([]any)) != 0 {
		t.Fatalf("still pending after cancel: %v", v)
	}
	if _, err := runCLI(t, sys, "pending", "cancel", id); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("cancel twice: %v", err)
	}
	// The person has no directory record yet (the change was future-dated):
	// the evidence is under the key the change was scheduled for.
	js, _ := jetstream.New(sys.nc)
	recs, err := jsstate.Open(context.Background(), js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for e, err := range recs.Evidence.ByPerson(context.Background(), first["person"].(string)) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == "pending_cancelled" && strings.Contains(string(e.Plan), `"operator":"local"`) && e.Email == email {
			found = true
		}
	}
	if !found {
		t.Fatalf("no pending_cancelled evidence naming the operator under %v", first["person"])
	}
	if _, ok := sb.Member(email); !ok {
		t.Fatal("the member is gone")
	}
}

// TestUnresolvedLinkAndDismiss: a leaver with only an HR id is unresolved;
// linking it to an email processes it (the member is removed) with evidence
// naming the operator; dismissing drops an entry and changes nothing.
func TestUnresolvedLinkAndDismiss(t *testing.T) {
	sys := mustRunMain(t, "")
	sb := sys.sandbox
	c := newSignedClient(t, sys)
	email := plainMember(t, sb, "jane.doe@acme.test")
	for i, id := range []string{"E-U1", "E-U2"} {
		body := fmt.Appendf(nil, `{"type":"leaver","occurred_at":%q,"person":{"id":%q,"status":"terminated"}}`,
			time.Now().UTC().Format(time.RFC3339), id)
		if r := c.send(fmt.Sprintf("msg_unres_%d", i), body); r.status != http.StatusAccepted {
			t.Fatalf("leaver: %d", r.status)
		}
	}
	var list []any
	eventually(t, "both are unresolved", func() bool {
		v, err := runCLI(t, sys, "unresolved")
		list, _ = v["events"].([]any)
		return err == nil && len(list) == 2
	})
	byPerson := map[string]map[string]any{}
	for _, u := range list {
		m := u.(map[string]any)
		byPerson[m["person_id"].(string)] = m
	}
	u1, u2 := byPerson["E-U1"], byPerson["E-U2"]
	if _, err := runCLI(t, sys, "unresolved", "link", "generic", u1["event_id"].(string), "--email", "Jane <x@y.z>"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("link to a non-address: %v", err)
	}
	v, err := runCLI(t, sys, "unresolved", "link", "generic", u1["event_id"].(string), "--email", email)
	if err != nil || v["linked_by"] != "local" {
		t.Fatalf("link: %v %v", v, err)
	}
	eventually(t, "the linked leaver is removed", func() bool { _, ok := sb.Member(email); return !ok })
	before := len(sb.Members())
	if v, err := runCLI(t, sys, "unresolved", "dismiss", "generic", u2["event_id"].(string)); err != nil || v["dismissed_by"] != "local" {
		t.Fatalf("dismiss: %v %v", v, err)
	}
	if v, _ := runCLI(t, sys, "unresolved"); len(v["events"].([]any)) != 0 {
		t.Fatalf("entries left: %v", v)
	}
	if n := len(sb.Members()); n != before {
		t.Fatalf("dismiss changed Sentry: %d → %d members", before, n)
	}
	ev, err := runCLI(t, sys, "evidence", "--email", email)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range ev["records"].([]any) {
		kinds = append(kinds, r.(map[string]any)["kind"].(string))
	}
	if !strings.Contains(strings.Join(kinds, ","), "unresolved_linked") {
		t.Fatalf("evidence kinds %v", kinds)
	}
}

// TestPlanExplains: an unknown email is "unknown person", never "in sync";
// a known person's grants name their rule and team roles are shown as
// effective; a pause is shown.
func TestPlanExplains(t *testing.T) {
	sys := mustRunMainCfg(t, "", nil, `
managed_teams: [mobile]
rules:
  - name: mobile engineers
    match: {department: Mobile}
    teams: [{slug: mobile, role: contributor}]
  - name: eng managers
    match: {title: "re:(?i)manager"}
    org_role: manager
`)
	sb := sys.sandbox
	c := newSignedClient(t, sys)
	t.Setenv("JML_ADMIN_ADDR", sys.adminAddr)
	t.Setenv("JML_DATA_DIR", sys.cfg.DataDir)
	var out bytes.Buffer
	err := dispatch(context.Background(), []string{"plan", "--email", "nobody@acme.test"}, &out, &out)
	if err != nil || !strings.Contains(out.String(), "UNKNOWN PERSON") || strings.Contains(out.String(), "in sync") {
		t.Fatalf("unknown person plan: %v\n%s", err, out.String())
	}
	v, _ := runCLI(t, sys, "plan", "--email", "nobody@acme.test")
	if v["outcome"] != "unknown_person" || v["known"] != false {
		t.Fatalf("unknown person json: %v", v)
	}
	email := plainMember(t, sb, "jane.doe@acme.test")
	if _, err := runCLI(t, sys, "pause"); err != nil {
		t.Fatal(err)
	}
	body := fmt.Appendf(nil, `{"type":"mover","occurred_at":%q,"person":{"id":"E-X1","email":%q,"status":"active","department":"Mobile","title":"Engineering Manager"}}`,
		time.Now().UTC().Format(time.RFC3339), email)
	if r := c.send("msg_plan_mover", body); r.status != http.StatusAccepted {
		t.Fatalf("mover: %d", r.status)
	}
	eventually(t, "the directory has the mover", func() bool {
		v, err := runCLI(t, sys, "plan", "--email", email)
		return err == nil && v["known"] == true && v["status"] == "active"
	})
	v, _ = runCLI(t, sys, "plan", "--email", email)
	desired := v["desired"].(map[string]any)
	if desired["org_role"] != "manager" || !strings.Contains(fmt.Sprint(desired["org_role_from"]), "eng managers") {
		t.Fatalf("desired %v", desired)
	}
	// A manager is team admin everywhere: the effective role says so.
	if eff := desired["effective_teams"].(map[string]any); eff["mobile"] != "admin" {
		t.Fatalf("effective teams %v", desired)
	}
	rules := map[string]string{}
	for _, s := range v["steps"].([]any) {
		m := s.(map[string]any)
		rules[fmt.Sprint(m["action"])] = fmt.Sprint(m["rule"])
		if m["change"] == "" {
			t.Fatalf("step without its change: %v", m)
		}
	}
	if !strings.Contains(rules["add_team"], "mobile engineers (department=Mobile)") || !strings.Contains(rules["set_org_role"], "eng managers") {
		t.Fatalf("steps' rules %v (plan %v)", rules, v)
	}
	out.Reset()
	err = dispatch(context.Background(), []string{"plan", "--email", email, "--detailed-exitcode"}, &out, &out)
	if exitCode(err) != exitHalted || !strings.Contains(out.String(), "PAUSED by local") || !strings.Contains(out.String(), "org role member → manager") {
		t.Fatalf("plan while paused: exit %d\n%s", exitCode(err), out.String())
	}
}
