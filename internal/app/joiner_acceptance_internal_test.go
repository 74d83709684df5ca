package app

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

const acceptancePolicy = `
organization: acme
default_org_role: member
rules:
  - match: {department: Payments}
    teams: [{slug: payments, role: contributor}]
  - match: {title: "re:(?i)staff|principal"}
    teams: [{slug: architecture, role: admin}]
managed_teams: [payments, architecture]
`

// TestJoinerTeamRolesSetByReconcileAfterAcceptance runs the real worker and
// reconciler against the sandbox: a joiner event becomes an invite whose team
// memberships have null roles (Sentry: "Do not set team-roles when inviting",
// src/sentry/core/endpoints/organization_member_index.py); the invite is
// accepted through the sandbox's control route (src/sentry/api/invite_helper.py
// keeps the memberships); the next reconcile run sets the team roles.
func TestJoinerTeamRolesSetByReconcileAfterAcceptance(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pol, err := policy.Parse("acceptance.yaml", []byte(acceptancePolicy))
	if err != nil {
		t.Fatal(err)
	}
	w, js, sb := testWorkerSandbox(t, func(o *WorkerOptions) { o.Policy = func() policy.Policy { return pol } })
	tel := w.o.Telemetry
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const email = "tom.joiner@acme.test"
	ev := events.Event{ID: "joiner-tom", Source: "generic", Type: events.Joiner, OccurredAt: time.Now().UTC(),
		ReceivedAt: time.Now().UTC(), Person: events.Person{ID: "E-77", Email: email, Name: "Tom Joiner",
			Status: events.Active, Department: "Payments", Title: "Staff Engineer", Groups: []string{}}}
	if _, err := events.NewPublisher(jetstream.Publisher(js), tel.TracerProvider, tel.Propagator).Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	var inv sentrytest.MemberView
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, ok := sb.Member(email)
		if ok && len(v.Teams) == 2 {
			inv = v
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no invite with both teams: %+v", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !inv.Pending || inv.Teams["architecture"] != "" || inv.Teams["payments"] != "" {
		t.Fatalf("invite = %+v; want pending with null team roles", inv)
	}

	resp, err := http.Post(sb.URL+"/_sandbox/invites/"+inv.ID+"/accept", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("accept: %d", resp.StatusCode)
	}

	rec, err := w.Reconciler()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := rec.Run(ctx, reconcile.RunOptions{Trigger: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := sb.Member(email)
	if m.Pending || m.Teams["architecture"] != "admin" || sum.Failed != 0 {
		t.Fatalf("after reconcile (%+v): member %+v; want architecture admin", sum, m)
	}
}
