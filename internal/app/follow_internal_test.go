package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/alert"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// captureSink records the alerts the notifier sends.
type captureSink struct {
	mu  sync.Mutex
	got []alert.Alert
}

func (c *captureSink) Name() string { return "capture" }
func (c *captureSink) Send(_ context.Context, _ string, a alert.Alert) error {
	c.mu.Lock()
	c.got = append(c.got, a)
	c.mu.Unlock()
	return nil
}

func (c *captureSink) find(kind alert.Kind, person string) (alert.Alert, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.got {
		if a.Kind == kind && strings.EqualFold(a.Person, person) {
			return a, true
		}
	}
	return alert.Alert{}, false
}

// followRig is the real worker with the audit-log follower on (a 200ms
// poll), its own embedded NATS and sandbox.
type followRig struct {
	t      testing.TB
	w      *Worker
	sb     *sentrytest.Server
	pub    *events.Publisher
	alerts *captureSink
}

const followPolicy = `
organization: acme
default_org_role: member
rules:
  - match: {department: Payments}
    teams: [{slug: payments, role: admin}]
managed_teams: [payments, security]
`

func newFollowRig(t testing.TB, outOfBand string) *followRig {
	return newFollowRigPoll(t, outOfBand, 200*time.Millisecond)
}

func newFollowRigPoll(t testing.TB, outOfBand string, every time.Duration) *followRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pol, err := policy.Parse("follow.yaml", []byte(followPolicy+outOfBand))
	if err != nil {
		t.Fatal(err)
	}
	sink := &captureSink{}
	notifier, err := alert.New(alert.Options{Sinks: []alert.Sink{sink}, DedupeWindow: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = notifier.Close(context.Background()) })
	w, js, sb := testWorkerSandbox(t, func(o *WorkerOptions) {
		o.Policy, o.Alerts, o.AuditPoll = func() policy.Policy { return pol }, notifier, every
	})
	tel := w.o.Telemetry
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &followRig{t: t, w: w, sb: sb, pub: events.NewPublisher(jetstream.Publisher(js), tel.TracerProvider, tel.Propagator), alerts: sink}
}

// event publishes an HR event for email.
func (r *followRig) event(id string, typ events.Type, status events.Status, email, department string) {
	r.t.Helper()
	ev := events.Event{ID: id, Source: "generic", Type: typ, OccurredAt: time.Now().UTC(), ReceivedAt: time.Now().UTC(),
		Person: events.Person{ID: "E-" + id, Email: email, Status: status, Department: department, Groups: []string{}}}
	if _, err := r.pub.Publish(context.Background(), ev); err != nil {
		r.t.Fatal(err)
	}
}

// as sends a request to the sandbox as a seeded user: a change by hand.
func (r *followRig) as(as, method, path, body string) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.sb.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sandbox")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sandbox-Act-As", as)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		r.t.Fatalf("%s %s as %s: %d", method, path, as, resp.StatusCode)
	}
}

// waitFor polls cond for up to 15 s.
func (r *followRig) waitFor(what string, cond func() bool) time.Duration {
	r.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 15*time.Second {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return time.Since(start)
}

func (r *followRig) member(email string) sentrytest.MemberView {
	m, _ := r.sb.Member(email)
	return m
}

// outOfBandRecord returns the plan of the newest evidence record of email
// that names an out-of-band change.
func (r *followRig) outOfBandRecord(email string) (map[string]any, string) {
	r.t.Helper()
	var plan map[string]any
	outcome := ""
	for e, err := range r.w.Evidence(context.Background(), email) {
		if err != nil {
			r.t.Fatal(err)
		}
		var p map[string]any
		if json.Unmarshal(e.Plan, &p) == nil && p["out_of_band"] != nil {
			plan, outcome = p, e.Outcome
		}
	}
	return plan, outcome
}

// georgeConverged waits until george is converged (payments admin) after his
// joiner event, so that what follows is only the hand-made change.
func (r *followRig) georgeConverged() {
	r.event("george-1", events.Joiner, events.Active, "george.miller@acme.test", "Payments")
	r.waitFor("george converged", func() bool { return r.member("george.miller@acme.test").Teams["payments"] == "admin" })
	time.Sleep(500 * time.Millisecond) // the follower has read (and skipped) the daemon's own entries
}

// TestFollowerRevertsHandMadeTeamChange: maya adds george to a managed team
// he should not be in; within seconds the follower's request removes him,
// and the evidence and an out_of_band alert name maya.
func TestFollowerRevertsHandMadeTeamChange(t *testing.T) {
	r := newFollowRig(t, "")
	r.georgeConverged()
	// Alice is a member no HR event ever named: the follower leaves her to
	// reconcile's orphans policy. Her entry comes first, so by the time
	// george's change is reverted, hers has been handled too.
	r.as("maya.manager@acme.test", http.MethodPost, "/api/0/organizations/acme/members/"+r.member("alice.nguyen@acme.test").ID+"/teams/security/", "")
	id := r.member("george.miller@acme.test").ID
	r.as("maya.manager@acme.test", http.MethodPost, "/api/0/organizations/acme/members/"+id+"/teams/security/", "")
	if _, ok := r.member("george.miller@acme.test").Teams["security"]; !ok {
		t.Fatal("the hand-made change did not happen")
	}
	took := r.waitFor("security removed again", func() bool {
		_, in := r.member("george.miller@acme.test").Teams["security"]
		return !in
	})
	t.Logf("reverted %v after the change", took)
	var a alert.Alert
	r.waitFor("out_of_band alert", func() bool {
		var ok bool
		a, ok = r.alerts.find(alert.KindOutOfBand, "george.miller@acme.test")
		return ok
	})
	if !strings.Contains(a.Summary, "maya.manager@acme.test") || !strings.Contains(a.Summary, "managed_teams reverted") || !strings.Contains(a.Summary, "member.join-team") {
		t.Fatalf("alert %q: want maya named, managed_teams reverted", a.Summary)
	}
	if _, in := r.member("alice.nguyen@acme.test").Teams["security"]; !in {
		t.Fatal("alice, unknown to the directory, was changed by the follower")
	}
	if a, ok := r.alerts.find(alert.KindOutOfBand, "alice.nguyen@acme.test"); ok {
		t.Fatalf("out_of_band alert for a person the directory does not know: %q", a.Summary)
	}
	plan, outcome := r.outOfBandRecord("george.miller@acme.test")
	ob, _ := plan["out_of_band"].(map[string]any)
	if ob["actor"] != "maya.manager@acme.test" || ob["event"] != "member.join-team" || outcome != "applied" {
		t.Fatalf("evidence %v (outcome %s): want maya's member.join-team, applied", plan, outcome)
	}
}

// TestFollowerReportsOrAdoptsPerPolicy: with out_of_band managed_teams
// report (or adopt) the hand-made membership stays; the alert and the
// evidence say so and name the actor.
func TestFollowerReportsOrAdoptsPerPolicy(t *testing.T) {
	for _, action := range []string{"report", "adopt"} {
		t.Run(action, func(t *testing.T) {
			r := newFollowRig(t, "out_of_band: {managed_teams: "+action+"}\n")
			r.georgeConverged()
			id := r.member("george.miller@acme.test").ID
			r.as("olivia.owner@acme.test", http.MethodPost, "/api/0/organizations/acme/members/"+id+"/teams/security/", "")
			var a alert.Alert
			r.waitFor("out_of_band alert", func() bool {
				var ok bool
				a, ok = r.alerts.find(alert.KindOutOfBand, "george.miller@acme.test")
				return ok
			})
			verb := map[string]string{"report": "reported, left in place", "adopt": "adopted"}[action]
			if !strings.Contains(a.Summary, "olivia.owner@acme.test") || !strings.Contains(a.Summary, "managed_teams "+verb) {
				t.Fatalf("alert %q: want olivia named and %q", a.Summary, verb)
			}
			if _, in := r.member("george.miller@acme.test").Teams["security"]; !in {
				t.Fatal("the hand-made membership was reverted; policy says " + action)
			}
			plan, outcome := r.outOfBandRecord("george.miller@acme.test")
			want := map[string]string{"report": "reported", "adopt": "adopted"}[action]
			if ob, _ := plan["out_of_band"].(map[string]any); ob["actor"] != "olivia.owner@acme.test" || outcome != want {
				t.Fatalf("evidence %v outcome %s: want olivia and %s", plan, outcome, want)
			}
		})
	}
}

// TestFollowerKeepsLeaversGone: a leaver re-invited by hand is removed again
// within seconds with an alert naming who re-invited them; with
// out_of_band.leavers: report the invite stays and the alert says so.
func TestFollowerKeepsLeaversGone(t *testing.T) {
	for _, action := range []string{"revert", "report"} {
		t.Run(action, func(t *testing.T) {
			r := newFollowRig(t, "out_of_band: {leavers: "+action+"}\n")
			const email = "hannah.schmidt@acme.test"
			r.event("hannah-1", events.Leaver, events.Terminated, email, "Mobile")
			r.waitFor("hannah removed", func() bool { _, ok := r.sb.Member(email); return !ok })
			time.Sleep(500 * time.Millisecond)
			r.as("olivia.owner@acme.test", http.MethodPost, "/api/0/organizations/acme/members/", `{"email":"`+email+`","orgRole":"member"}`)
			if _, ok := r.sb.Member(email); !ok {
				t.Fatal("the re-invite did not happen")
			}
			var a alert.Alert
			r.waitFor("out_of_band alert", func() bool { var ok bool; a, ok = r.alerts.find(alert.KindOutOfBand, email); return ok })
			if !strings.Contains(a.Summary, "olivia.owner@acme.test") || !strings.Contains(a.Summary, "member.invite") {
				t.Fatalf("alert %q: want olivia's member.invite named", a.Summary)
			}
			_, present := r.sb.Member(email)
			switch action {
			case "revert":
				if present {
					r.waitFor("re-invite deleted", func() bool { _, ok := r.sb.Member(email); return !ok })
				}
				if !strings.Contains(a.Summary, "leavers reverted") {
					t.Fatalf("alert %q", a.Summary)
				}
			case "report":
				if !present || !strings.Contains(a.Summary, "leavers reported") {
					t.Fatalf("present %v, alert %q: want the invite left and reported", present, a.Summary)
				}
			}
		})
	}
}

// TestFollowerAcceptInviteSetsTeamRoles: Sentry stores an invite's team
// memberships with null roles (src/sentry/core/endpoints/organization_member_index.py);
// member.accept-invite makes the follower converge the joiner, so the team
// role is set seconds after acceptance, not at the next reconcile, and no
// out_of_band alert is raised (accepting one's own invite is the joiner flow).
func TestFollowerAcceptInviteSetsTeamRoles(t *testing.T) {
	r := newFollowRig(t, "")
	const email = "tom.joiner@acme.test"
	r.event("tom-1", events.Joiner, events.Active, email, "Payments")
	r.waitFor("invite", func() bool { m, ok := r.sb.Member(email); return ok && m.Pending && len(m.Teams) == 1 })
	if got := r.member(email).Teams["payments"]; got != "" {
		t.Fatalf("invite team role %q, want null", got)
	}
	time.Sleep(500 * time.Millisecond)
	resp, err := http.Post(r.sb.URL+"/_sandbox/invites/"+r.member(email).ID+"/accept", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("accept: %d", resp.StatusCode)
	}
	took := r.waitFor("team role set", func() bool { m := r.member(email); return !m.Pending && m.Teams["payments"] == "admin" })
	t.Logf("team role set %v after acceptance", took)
	if a, ok := r.alerts.find(alert.KindOutOfBand, email); ok {
		t.Fatalf("out_of_band alert for an accepted invite: %q", a.Summary)
	}
}
