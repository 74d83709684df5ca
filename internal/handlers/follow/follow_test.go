package follow_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/follow"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// rig is a follower on a real sandbox and an embedded JetStream.
type rig struct {
	t      testing.TB
	sb     *sentrytest.Server
	client *sentry.Client
	js     jetstream.JetStream
	cursor *jsstate.FollowCursor
	pub    *events.Publisher

	mu         sync.Mutex
	alerts     []string
	reconciles []string
}

func newRig(t testing.TB, so sentrytest.Options) *rig {
	t.Helper()
	ctx := context.Background()
	_, _, js := natstest.Run(t)
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if so.RateLimit == 0 {
		so.RateLimit = -1
	}
	sb := sentrytest.NewServer(t, so)
	client, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := jsstate.OpenFollowCursor(ctx, js, jsstate.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, sb: sb, client: client, js: js, cursor: cur, pub: events.NewPublisher(js, nil, nil)}
}

// follower builds a Follower on the rig; the service user is jml-bot.
func (r *rig) follower(tune func(*follow.Options)) *follow.Follower {
	r.t.Helper()
	bot, _ := r.sb.Member("jml-bot@acme.test")
	o := follow.Options{Sentry: r.client, Cursor: r.cursor, Publisher: r.pub, SelfUserID: bot.UserID, SelfEmail: "jml-bot@acme.test",
		Alert: func(_ context.Context, kind, _, summary string) {
			r.mu.Lock()
			r.alerts = append(r.alerts, kind+": "+summary)
			r.mu.Unlock()
		},
		RequestReconcile: func(_ context.Context, reason string) error {
			r.mu.Lock()
			r.reconciles = append(r.reconciles, reason)
			r.mu.Unlock()
			return nil
		}}
	if tune != nil {
		tune(&o)
	}
	f, err := follow.New(o)
	if err != nil {
		r.t.Fatal(err)
	}
	return f
}

// as sends an API request to the sandbox as the given seeded user
// (X-Sandbox-Act-As: a hand-made change), or as the service user when as is "".
func (r *rig) as(as, method, path string, body string) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.sb.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sandbox")
	req.Header.Set("Content-Type", "application/json")
	if as != "" {
		req.Header.Set("X-Sandbox-Act-As", as)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		r.t.Fatalf("%s %s as %q: %d", method, path, as, resp.StatusCode)
	}
}

func (r *rig) memberID(email string) string {
	m, ok := r.sb.Member(email)
	if !ok {
		r.t.Fatalf("no member %s", email)
	}
	return m.ID
}

// joinTeam adds email to team as user as (src/sentry/core/endpoints/organization_member/team_details.py).
func (r *rig) joinTeam(as, email, team string) {
	r.as(as, http.MethodPost, "/api/0/organizations/acme/members/"+r.memberID(email)+"/teams/"+team+"/", "")
}

// requests drains the convergence requests published so far.
func (r *rig) requests() []events.Event {
	r.t.Helper()
	ctx := context.Background()
	c, err := r.js.OrderedConsumer(ctx, events.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"jml.events." + events.SourceSentryAudit + ".>"}})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []events.Event
	for {
		m, err := c.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
		if err != nil {
			return out
		}
		ev, err := events.Unmarshal(m.Data())
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, ev)
	}
}

func (r *rig) auditCalls() int {
	n := 0
	for _, l := range r.sb.RequestLog() {
		if l.Pattern == sentrytest.PatternAuditLogs {
			n++
		}
	}
	return n
}

func poll(t testing.TB, f *follow.Follower) follow.Result {
	t.Helper()
	res, err := f.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestFollowerTurnsHandMadeChangesIntoRequests: entries by another user
// become convergence requests naming the actor; the service user's own are
// skipped; an idle poll costs one API call; a restart resumes from the cursor.
func TestFollowerTurnsHandMadeChangesIntoRequests(t *testing.T) {
	r := newRig(t, sentrytest.Options{})
	f := r.follower(nil)
	if res := poll(t, f); !res.FirstPoll || res.Requests != 0 {
		t.Fatalf("first poll %+v: want the cursor set at the newest entry and nothing published", res)
	}
	r.joinTeam("maya.manager@acme.test", "jane.doe@acme.test", "security") // by hand
	r.joinTeam("", "george.miller@acme.test", "data")                      // the daemon itself
	res := poll(t, f)
	if res.Requests != 1 || res.Skipped != 1 || res.Gap != "" {
		t.Fatalf("poll %+v: want 1 request (maya's change) and the daemon's own entry skipped", res)
	}
	reqs := r.requests()
	if len(reqs) != 1 {
		t.Fatalf("published %d requests, want 1", len(reqs))
	}
	ev := reqs[0]
	ob := ev.OutOfBand
	if ev.Source != events.SourceSentryAudit || !strings.EqualFold(ev.Person.Email, "jane.doe@acme.test") || ob == nil ||
		ob.Event != "member.join-team" || ob.Actor != "maya.manager@acme.test" || ob.ActorID == "" || ob.MemberID != r.memberID("jane.doe@acme.test") {
		t.Fatalf("request %+v (out of band %+v): want jane's member.join-team by maya", ev, ob)
	}

	// Idle: one call per poll.
	before := r.auditCalls()
	for range 3 {
		if res := poll(t, f); res.Requests != 0 || res.Gap != "" {
			t.Fatalf("idle poll %+v", res)
		}
	}
	if n := r.auditCalls() - before; n != 3 {
		t.Fatalf("3 idle polls made %d audit-log calls, want 3", n)
	}

	// A restart (a new follower on the same cursor) publishes nothing again
	// and picks up what happened while it was down.
	r.joinTeam("olivia.owner@acme.test", "bob.martin@acme.test", "payments")
	f2 := r.follower(nil)
	if res := poll(t, f2); res.Requests != 1 || res.FirstPoll {
		t.Fatalf("after restart %+v: want exactly bob's new entry", res)
	}
	reqs = r.requests()
	if len(reqs) != 2 || !strings.EqualFold(reqs[1].Person.Email, "bob.martin@acme.test") || reqs[1].OutOfBand.Actor != "olivia.owner@acme.test" {
		t.Fatalf("requests after restart: %+v", reqs)
	}
	if len(r.alerts) != 0 || len(r.reconciles) != 0 {
		t.Fatalf("alerts %v, reconciles %v: want none", r.alerts, r.reconciles)
	}
}

// TestFollowerRetentionGap: the cursor's entries are no longer in the log
// (retention, or down longer than the log keeps): an audit_gap alert and a
// full reconcile request, and the follower goes on from the newest entry.
func TestFollowerRetentionGap(t *testing.T) {
	r := newRig(t, sentrytest.Options{})
	ctx := context.Background()
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := r.cursor.Save(ctx, follow.Cursor{LastAt: old, Seen: []follow.Seen{{ID: 987654321, At: old}}}, 0); err != nil {
		t.Fatal(err)
	}
	f := r.follower(nil)
	res := poll(t, f)
	if res.Gap != follow.GapRetention {
		t.Fatalf("poll %+v: want a retention gap", res)
	}
	if len(r.alerts) != 1 || !strings.HasPrefix(r.alerts[0], "audit_gap: ") || len(r.reconciles) != 1 {
		t.Fatalf("alerts %v, reconciles %v: want one audit_gap alert and one reconcile request", r.alerts, r.reconciles)
	}
	// Afterwards the follower works normally from the newest entry.
	if res := poll(t, f); res.Gap != "" || res.Requests != 0 {
		t.Fatalf("poll after the gap %+v", res)
	}
	r.joinTeam("maya.manager@acme.test", "jane.doe@acme.test", "security")
	if res := poll(t, f); res.Requests != 1 || res.Gap != "" {
		t.Fatalf("poll %+v: want jane's entry", res)
	}
}

// TestFollowerBacklogGap: more new entries than one poll may read is a gap:
// the newest are requested, a full reconcile covers the rest.
func TestFollowerBacklogGap(t *testing.T) {
	r := newRig(t, sentrytest.Options{})
	f := r.follower(func(o *follow.Options) { o.MaxEntries = 3 })
	poll(t, f)
	for _, team := range []string{"security", "data", "platform", "architecture", "mobile"} {
		r.joinTeam("maya.manager@acme.test", "george.miller@acme.test", team)
	}
	res := poll(t, f)
	if res.Gap != follow.GapBacklog || res.Requests != 3 || len(r.reconciles) != 1 {
		t.Fatalf("poll %+v, reconciles %v: want a backlog gap, 3 requests and a reconcile", res, r.reconciles)
	}
}

// TestFollowerShapeGap: Sentry's audit-log endpoint is experimental; an
// answer without "rows", or an entry without a numeric id, is a gap alerted
// once (not on every poll while it lasts) with one reconcile request, and the
// cursor stays where it was.
func TestFollowerShapeGap(t *testing.T) {
	for name, body := range map[string]string{
		"no rows":        `{"entries": [], "options": []}`,
		"non-numeric id": `{"rows": [{"id": "a1b2", "event": "member.join-team", "dateCreated": "2026-01-01T00:00:00Z", "data": {}}]}`,
		"no event":       `{"rows": [{"id": "17", "dateCreated": "2026-01-01T00:00:00Z", "data": {}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, body)
			}))
			defer srv.Close()
			r := newRig(t, sentrytest.Options{})
			client, err := sentry.New(sentry.Config{BaseURL: srv.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true})
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
			if _, err := r.cursor.Save(context.Background(), follow.Cursor{LastAt: at}, 0); err != nil {
				t.Fatal(err)
			}
			f := r.follower(func(o *follow.Options) { o.Sentry = client })
			for range 3 {
				if res := poll(t, f); res.Gap != follow.GapShape {
					t.Fatalf("poll %+v: want a shape gap", res)
				}
			}
			if len(r.alerts) != 1 || len(r.reconciles) != 1 {
				t.Fatalf("alerts %v, reconciles %v: want one of each for a lasting shape change", r.alerts, r.reconciles)
			}
			var cur follow.Cursor
			if _, err := r.cursor.Load(context.Background(), &cur); err != nil || !cur.LastAt.Equal(at) || cur.Broken != follow.GapShape {
				t.Fatalf("cursor %+v, %v: want it unmoved and marked broken", cur, err)
			}
		})
	}
}
