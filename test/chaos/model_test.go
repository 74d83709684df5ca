package chaos

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// chaosPolicy is the policy every worker runs: teams by department, a
// manager role by group, a team-role grant by group, every policy team
// managed, and the brakes opened wide (this suite is about delivery, not about
// the brakes, which halt a burst of removals on purpose).
const chaosPolicy = `
organization: acme
default_org_role: member
rules:
  - match: {department: Payments}
    teams: [{slug: payments}]
  - match: {department: Data}
    teams: [{slug: data, role: admin}]
  - match: {department: Platform}
    teams: [{slug: platform}, {slug: data}]
  - match: {department: Mobile}
    teams: [{slug: mobile}]
  - match: {group: leads}
    org_role: manager
  - match: {group: sre}
    teams: [{slug: platform, role: admin}]
managed_teams: [payments, data, platform, mobile]
suspend: remove
brakes:
  max_event_removals_per_minute: 1000000
`

var (
	departments = []string{"Payments", "Data", "Platform", "Mobile", "Legal"}
	groupSets   = [][]string{{}, {}, {"sre"}, {"leads"}, {"sre", "leads"}}
	teamSlugs   = []string{"payments", "data", "platform", "mobile"}
)

const (
	ownerEmail   = "olivia.owner@acme.test"
	serviceEmail = "jml-bot@acme.test"
)

// person is one person of the scenario and its history in occurred_at order.
type person struct {
	ID, Email string
	Seeded    bool
	Seed      sentrytest.SeedMember // when Seeded
	History   []events.Event        // occurred_at order (the truth)
}

// sendItem is one HTTP delivery: the webhook-id and the body. Several items
// may share an id (a duplicate within JetStream's window) or an event
// (a replay under a new id, as after the window).
type sendItem struct {
	ID     string
	Body   []byte
	Person int
	Kind   string // event | duplicate | replay
}

type scenario struct {
	People []*person
	Sends  []sendItem
	Seed   sentrytest.Seed
	Pol    policy.Policy
	Events int // distinct lifecycle events
}

// access is what a person should have (or has) in Sentry: nil = no member.
type access struct {
	OrgRole string
	Teams   map[string]string // slug → effective team role
	// Stored team roles (what Sentry keeps: "" at or below the org role's
	// minimum), used for the mutation bounds.
	Stored map[string]string
}

func (a *access) String() string {
	if a == nil {
		return "absent"
	}
	keys := slices.Sorted(maps.Keys(a.Teams))
	var b strings.Builder
	b.WriteString(a.OrgRole + " {")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(k + ":" + a.Teams[k])
	}
	b.WriteString("}")
	return b.String()
}

func desiredAccess(pol policy.Policy, p events.Person) *access {
	if p.Status != events.Active {
		return nil
	}
	d := pol.Evaluate(p)
	a := &access{OrgRole: d.OrgRole, Teams: map[string]string{}, Stored: map[string]string{}}
	for slug, role := range d.Teams {
		a.Teams[slug] = policy.EffectiveTeamRole(d.OrgRole, role)
		a.Stored[slug] = storedRole(d.OrgRole, role)
	}
	return a
}

// storedRole is how Sentry stores a team role: null at or below the org role's minimum.
func storedRole(orgRole, role string) string {
	if role == "" || policy.EffectiveTeamRole(orgRole, "") == policy.EffectiveTeamRole(orgRole, role) {
		return ""
	}
	return role
}

func seedAccess(m sentrytest.SeedMember) *access {
	a := &access{OrgRole: m.OrgRole, Teams: map[string]string{}, Stored: map[string]string{}}
	for slug, role := range m.Teams {
		a.Teams[slug] = policy.EffectiveTeamRole(m.OrgRole, role)
		a.Stored[slug] = storedRole(m.OrgRole, role)
	}
	return a
}

// newScenario draws a lifecycle history of about n events over n/5 people
// (joiners, movers, updates, leavers, suspensions, rehires; a third of the
// people are members from the start), and the order it is delivered in:
// people interleaved, a quarter of each person's adjacent events swapped, 4%
// of the events held back to the very end (late), 5% sent twice with the same
// webhook-id (duplicates) and 3% sent again under a new webhook-id (replays).
func newScenario(seed uint64, n int, prefix string) *scenario {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	pol, err := policy.Parse("chaos-policy.yaml", []byte(chaosPolicy))
	if err != nil {
		panic(err)
	}
	sc := &scenario{Pol: pol}
	sc.Seed = sentrytest.Seed{
		Org: sentrytest.SeedOrg{Slug: "acme", Name: "Acme Chaos"},
		Members: []sentrytest.SeedMember{
			{Email: ownerEmail, OrgRole: "owner"},
			{Email: serviceEmail, OrgRole: "manager"},
		},
	}
	for _, s := range teamSlugs {
		sc.Seed.Teams = append(sc.Seed.Teams, sentrytest.SeedTeam{Slug: s, Name: strings.ToUpper(s[:1]) + s[1:]})
	}
	nPeople := max(n/5, 4)
	t0 := time.Now().UTC().Add(-6 * time.Hour).Truncate(time.Second)
	for i := range nPeople {
		p := &person{ID: fmt.Sprintf("E-%s%05d", prefix, i), Email: fmt.Sprintf("p%s%05d@acme.test", prefix, i)}
		if r.IntN(3) == 0 {
			p.Seeded = true
			p.Seed = sentrytest.SeedMember{Email: p.Email, Name: "Person " + p.ID, OrgRole: "member", Teams: map[string]string{}}
			if r.IntN(6) == 0 {
				p.Seed.OrgRole = "manager"
			}
			for _, s := range teamSlugs {
				switch r.IntN(4) {
				case 0:
					p.Seed.Teams[s] = ""
				case 1:
					p.Seed.Teams[s] = "admin"
				}
			}
			sc.Seed.Members = append(sc.Seed.Members, p.Seed)
		}
		sc.People = append(sc.People, p)
	}
	// Distribute n events over the people: everyone gets at least one.
	counts := make([]int, nPeople)
	for i := range counts {
		counts[i] = 1
	}
	for k := nPeople; k < n; k++ {
		counts[r.IntN(nPeople)]++
	}
	evn := 0
	for i, p := range sc.People {
		active := p.Seeded
		dept := departments[r.IntN(len(departments))]
		groups := groupSets[r.IntN(len(groupSets))]
		everActive := p.Seeded
		for j := range counts[i] {
			evn++
			ev := events.Event{Source: "generic", OccurredAt: t0.Add(time.Duration(j)*time.Minute + time.Duration(i)*time.Millisecond)}
			roll := r.IntN(100)
			if active {
				switch {
				case roll < 50:
					ev.Type = events.Mover
					dept = departments[r.IntN(len(departments))]
					groups = groupSets[r.IntN(len(groupSets))]
				case roll < 60:
					ev.Type = events.Update
				case roll < 85:
					ev.Type, active = events.Leaver, false
				default:
					ev.Type, active = events.Suspend, false
				}
			} else {
				switch {
				case roll < 15:
					ev.Type = events.Leaver // a leaver for someone already gone
				case everActive:
					ev.Type, active = events.Rehire, true
				default:
					ev.Type, active = events.Joiner, true
				}
				if active && r.IntN(2) == 0 {
					dept = departments[r.IntN(len(departments))]
					groups = groupSets[r.IntN(len(groupSets))]
				}
			}
			everActive = everActive || active
			status := events.Active
			switch ev.Type {
			case events.Leaver:
				status = events.Terminated
			case events.Suspend:
				status = events.Suspended
			}
			ev.Person = events.Person{ID: p.ID, Email: p.Email, Name: "Person " + p.ID, Status: status,
				Department: dept, Title: []string{"Engineer", "Analyst", "Lead"}[r.IntN(3)], Groups: slices.Clone(groups)}
			ev.ID = fmt.Sprintf("msg_chaos_%d_%s%05d_%02d", seed, prefix, i, j)
			p.History = append(p.History, ev)
		}
	}
	sc.Events = evn
	// Delivery order.
	type slot struct{ person, idx int }
	queues := make([][]int, nPeople)
	for i, p := range sc.People {
		q := make([]int, len(p.History))
		for k := range q {
			q[k] = k
		}
		for k := 0; k+1 < len(q); k++ {
			if r.IntN(4) == 0 {
				q[k], q[k+1] = q[k+1], q[k]
			}
		}
		queues[i] = q
	}
	var order, late []slot
	live := make([]int, 0, nPeople)
	for i := range queues {
		live = append(live, i)
	}
	for len(live) > 0 {
		k := r.IntN(len(live))
		i := live[k]
		s := slot{i, queues[i][0]}
		queues[i] = queues[i][1:]
		if len(queues[i]) == 0 {
			live = append(live[:k], live[k+1:]...)
		}
		if r.IntN(25) == 0 {
			late = append(late, s)
		} else {
			order = append(order, s)
		}
	}
	order = append(order, late...)
	for _, s := range order {
		ev := sc.People[s.person].History[s.idx]
		body := genericBody(ev)
		sc.Sends = append(sc.Sends, sendItem{ID: ev.ID, Body: body, Person: s.person, Kind: "event"})
		if r.IntN(20) == 0 {
			sc.Sends = append(sc.Sends, sendItem{ID: ev.ID, Body: body, Person: s.person, Kind: "duplicate"})
		}
		if r.IntN(33) == 0 {
			sc.Sends = append(sc.Sends, sendItem{ID: ev.ID + "_replay", Body: body, Person: s.person, Kind: "replay"})
		}
	}
	// Move duplicates and replays a little later so they are not back to back.
	for k := range sc.Sends {
		if sc.Sends[k].Kind != "event" {
			j := min(len(sc.Sends)-1, k+r.IntN(50))
			sc.Sends[k], sc.Sends[j] = sc.Sends[j], sc.Sends[k]
		}
	}
	return sc
}

// genericBody is the generic source's JSON for ev.
func genericBody(ev events.Event) []byte {
	p := ev.Person
	body := map[string]any{
		"type":        ev.Type,
		"occurred_at": ev.OccurredAt.Format(time.RFC3339Nano),
		"person": map[string]any{"id": p.ID, "email": p.Email, "name": p.Name, "status": p.Status,
			"department": p.Department, "title": p.Title, "groups": p.Groups},
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	return b
}

// final is the person's desired end state: the event with the latest
// occurred_at decides (every event carries every field), or the seed when the
// person has no event.
func (sc *scenario) final(p *person) *access {
	if len(p.History) == 0 {
		if p.Seeded {
			return seedAccess(p.Seed)
		}
		return nil
	}
	last := p.History[0]
	for _, ev := range p.History[1:] {
		if ev.OccurredAt.After(last.OccurredAt) {
			last = ev
		}
	}
	return desiredAccess(sc.Pol, last.Person)
}

// bounds are the most successful mutations of each kind the history implies
// for one person. The history's states in occurred_at order are S0 (the seed,
// or no member) and one state per event; the workers apply a subsequence of
// them (an older event never overwrites a newer one), possibly stopping part
// way between two of them, and each kind is counted so that a subsequence
// never has more of it than the whole sequence:
//
//   - member.remove: present → absent; member.invite: absent → present.
//   - Across a removal a rehire re-grants the access snapshot and then
//     converges to policy, so org role and team changes are counted over the
//     present states only, skipping absent ones (an invite sets its role,
//     teams and team roles at once: not counted as joins).
//   - member.edit: changes of the org role over the present states.
//   - member.join-team / member.leave-team, per team: absent → in / in →
//     absent over the present states.
//   - member.team-role, per team: changes of the stored team role over the
//     present states that have the team (skipping those that do not: leaving
//     and re-joining looks like a role change to a worker that skipped the
//     states in between), plus one per join (a team joined through the
//     per-team endpoint gets its role in a second call).
func (sc *scenario) bounds(p *person) map[string]int {
	states := []*access{nil}
	if p.Seeded {
		states[0] = seedAccess(p.Seed)
	}
	hist := slices.Clone(p.History)
	sort.SliceStable(hist, func(i, j int) bool { return hist[i].OccurredAt.Before(hist[j].OccurredAt) })
	for _, ev := range hist {
		states = append(states, desiredAccess(sc.Pol, ev.Person))
	}
	b := map[string]int{}
	var prevPresent *access
	lastRole := map[string]string{} // team → stored role in the last present state that had the team
	invited := false                // present as an invite (this suite never accepts one)
	for i, s := range states {
		if s == nil {
			invited = false
		}
		if i > 0 {
			prev := states[i-1]
			switch {
			case prev != nil && s == nil:
				b["member.remove"]++
			case prev == nil && s != nil:
				b["member.invite"]++
				invited = true
				if prevPresent != nil {
					// A rehire re-grants the last access first (its roles).
					b["member.team-role"] += len(prevPresent.Stored)
				}
			}
			if invited && s != nil {
				// Sentry stores no team roles on an invite; each PUT that
				// sets an invite's team set (one per state change while the
				// invite is pending, as nobody accepts in this suite) may
				// store one per team.
				b["member.team-role"] += len(s.Stored)
			}
		}
		if s == nil {
			continue
		}
		for _, slug := range teamSlugs {
			now, has := s.Stored[slug]
			if prevPresent != nil {
				_, had := prevPresent.Stored[slug]
				switch {
				case had && !has:
					b["member.leave-team"]++
				case !had && has:
					b["member.join-team"]++
					b["member.team-role"]++
				}
			}
			if has {
				if was, ok := lastRole[slug]; ok && was != now {
					b["member.team-role"]++
				}
				lastRole[slug] = now
			}
		}
		if prevPresent != nil && prevPresent.OrgRole != s.OrgRole {
			b["member.edit"]++
		}
		prevPresent = s
	}
	return b
}

// merge adds o's people, deliveries and seeded members to sc (o's prefix
// must differ).
func (sc *scenario) merge(o *scenario) {
	sc.People = append(sc.People, o.People...)
	sc.Events += o.Events
	for _, m := range o.Seed.Members {
		if m.Email != ownerEmail && m.Email != serviceEmail {
			sc.Seed.Members = append(sc.Seed.Members, m)
		}
	}
}
