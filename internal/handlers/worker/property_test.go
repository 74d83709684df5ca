package worker_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

const propPolicy = `
rules:
  - match: {department: Payments}
    teams: [{slug: payments}]
  - match: {department: Data}
    teams: [{slug: data, role: admin}]
  - match: {group: leads}
    org_role: manager
managed_teams: [payments, data]
`

var propPeople = []events.Person{
	{ID: "P-A", Email: "pa.new@acme.test"},
	{ID: "P-B", Email: "pb.new@acme.test"},
	{ID: "P-C", Email: "jane.doe@acme.test"},
	{ID: "P-D", Email: "bob.martin@acme.test"},
}

// history draws a random lifecycle for each person, in the order it happened.
func history(r *rand.Rand) []events.Event {
	t0 := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	var out []events.Event
	n := 0
	for _, p := range propPeople {
		for i := range 1 + r.IntN(4) {
			n++
			ev := events.Event{ID: fmt.Sprintf("prop-%d", n), Source: "generic", OccurredAt: t0.Add(time.Duration(n*10+i) * time.Minute),
				ReceivedAt: t0, Person: events.Person{ID: p.ID, Email: p.Email}}
			switch r.IntN(5) {
			case 0:
				ev.Type, ev.Person.Status = events.Joiner, events.Active
				ev.Person.Department = []string{"Payments", "Data"}[r.IntN(2)]
			case 1:
				ev.Type = events.Mover
				ev.Person.Department = []string{"Payments", "Data", "Legal"}[r.IntN(3)]
				if r.IntN(2) == 0 {
					ev.Person.Groups = []string{"leads"}
				} else {
					ev.Person.Groups = []string{}
				}
			case 2:
				ev.Type, ev.Person.Status = events.Leaver, events.Terminated
			case 3:
				ev.Type, ev.Person.Status = events.Rehire, events.Active
			default:
				ev.Type, ev.Person.Status = events.Suspend, events.Suspended
			}
			out = append(out, ev)
		}
	}
	return out
}

func (h *harness) publishRaw(t *testing.T, ev events.Event, msgID string) {
	t.Helper()
	data, _ := events.Marshal(ev)
	m := nats.NewMsg(ev.Subject())
	m.Data = data
	if _, err := h.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
}

// quiet waits until the worker has acked everything published.
func (h *harness) quiet(t *testing.T) {
	t.Helper()
	st, _ := h.js.Stream(context.Background(), events.StreamEvents)
	eventually(t, "the worker is idle", func() bool {
		cons, err := h.js.Consumer(context.Background(), events.StreamEvents, events.ConsumerWorker)
		if err != nil {
			return false // the worker has not created its consumer yet
		}
		ci, err1 := cons.Info(context.Background())
		si, err2 := st.Info(context.Background())
		return err1 == nil && err2 == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.AckFloor.Stream == si.State.LastSeq
	})
}

// settle does what real Sentry and a later event would: every pending invite
// of the property's people is accepted through the sandbox's acceptance route
// (an invite's team roles are null in Sentry until then: "Do not set
// team-roles when inviting", src/sentry/core/endpoints/organization_member/
// index.py), then each person is converged once more, as the next event or
// the scheduled reconcile would. It returns what that convergence did.
func (h *harness) settle(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, p := range propPeople {
		m, ok := h.sb.Member(p.Email)
		if !ok || !m.Pending {
			continue
		}
		resp, err := http.Post(h.sb.URL+"/_sandbox/invites/"+m.ID+"/accept", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("accept the invite of %s: %s", p.Email, resp.Status)
		}
		out = append(out, "accepted "+p.Email)
	}
	for _, p := range propPeople {
		rec, err := h.dir.Get(ctx, p.Key())
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		res, err := h.conv.Converge(ctx, rec, func(context.Context) error { return nil })
		if err != nil {
			t.Fatalf("converge %s after acceptance: %v", p.ID, err)
		}
		for _, st := range res.Steps {
			out = append(out, fmt.Sprintf("%s: %s (%s)", p.ID, st.Describe(), st.Result))
		}
	}
	return out
}

type endState struct {
	dir    map[string]string // person → status/department/groups at version time
	sentry map[string]string // email → present/role/effective teams
}

func (h *harness) end(t *testing.T) endState {
	t.Helper()
	es := endState{dir: map[string]string{}, sentry: map[string]string{}}
	for _, p := range propPeople {
		rec, err := h.dir.Get(context.Background(), p.Key())
		if err != nil {
			es.dir[p.ID] = "absent"
		} else {
			es.dir[p.ID] = fmt.Sprintf("%s|%s|%v|%s", rec.Person.Status, rec.Person.Department, rec.Person.Groups, rec.Version.OccurredAt.Format(time.RFC3339))
		}
		m, ok := h.sb.Member(p.Email)
		if !ok {
			es.sentry[p.Email] = "absent"
			continue
		}
		teams := map[string]string{}
		for slug, stored := range m.Teams {
			teams[slug] = policy.EffectiveTeamRole(m.OrgRole, stored)
		}
		es.sentry[p.Email] = fmt.Sprintf("%s|%v", m.OrgRole, teams)
	}
	return es
}

// TestPropertyOrderAndDuplicatesDoNotMatter: any permutation of an event
// history, with duplicates (past JetStream's window: new Nats-Msg-Ids), ends
// with the same directory as in-order delivery, and, once every invite is
// accepted and each person converged again (settle), the same effective
// Sentry access (modulo member id). Pending invites are not compared: Sentry
// stores their team roles as null whatever was asked.
func TestPropertyOrderAndDuplicatesDoNotMatter(t *testing.T) {
	pol, err := policy.Parse("prop.yaml", []byte(propPolicy))
	if err != nil {
		t.Fatal(err)
	}
	trials := 6
	if testing.Short() {
		trials = 2
	}
	for trial := range trials {
		seed := uint64(time.Now().UnixNano()) + uint64(trial)
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			hist := history(r)

			inOrder := startPolicy(t, pol)
			for _, ev := range hist {
				inOrder.publishRaw(t, ev, ev.MsgID())
				inOrder.quiet(t)
			}
			inOrderSettle := inOrder.settle(t)
			want := inOrder.end(t)

			shuffled := startPolicy(t, pol)
			perm := append([]events.Event(nil), hist...)
			r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			for i, ev := range perm {
				shuffled.publishRaw(t, ev, ev.MsgID())
				if r.IntN(3) == 0 { // a replay after the duplicate window
					shuffled.publishRaw(t, ev, fmt.Sprintf("replay-%d", i))
				}
			}
			shuffled.quiet(t)
			shuffledSettle := shuffled.settle(t)
			got := shuffled.end(t)
			if !maps.Equal(got.dir, want.dir) {
				t.Errorf("directory differs\n got %v\nwant %v", got.dir, want.dir)
			}
			if !maps.Equal(got.sentry, want.sentry) {
				t.Errorf("sentry differs\n got %v\nwant %v", got.sentry, want.sentry)
			}
			if t.Failed() {
				for _, ev := range hist {
					t.Logf("history: %s %s %s status=%s dept=%s groups=%v", ev.OccurredAt.Format("15:04"), ev.Person.ID, ev.Type, ev.Person.Status, ev.Person.Department, ev.Person.Groups)
				}
				for _, ev := range perm {
					t.Logf("shuffled: %s %s %s", ev.OccurredAt.Format("15:04"), ev.Person.ID, ev.Type)
				}
				t.Logf("settle in order: %q", inOrderSettle)
				t.Logf("settle shuffled: %q", shuffledSettle)
			}
		})
	}
}
