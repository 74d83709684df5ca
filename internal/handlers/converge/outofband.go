package converge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
)

// Out-of-band kinds: what a hand-made change touched, as policy.out_of_band
// names it. KindMembership (an active person removed by hand, so convergence
// invites them again) is always reverted.
const (
	KindManagedTeams = "managed_teams"
	KindOrgRole      = "org_role"
	KindLeavers      = "leavers"
	KindMembership   = "membership"
)

// Outcomes of a convergence that left a hand-made change in place.
const (
	OutcomeReported Outcome = "reported" // policy out_of_band: report (the alert is the point)
	OutcomeAdopted  Outcome = "adopted"  // policy out_of_band: adopt
)

// OutOfBand is what a convergence did with a change made by hand in Sentry:
// the audit entry (who, what, when) and, per kind of step it planned, the
// policy action taken (revert, report, adopt).
type OutOfBand struct {
	events.OutOfBand
	Actions map[string]string `json:"actions"` // kind → revert | report | adopt
}

type outOfBandKey struct{}

// WithOutOfBand returns ctx carrying the audit entry that triggered a
// convergence: it applies policy.out_of_band and names the entry's actor in
// its evidence and alert.
func WithOutOfBand(ctx context.Context, ob events.OutOfBand) context.Context {
	return context.WithValue(ctx, outOfBandKey{}, ob)
}

func outOfBandFrom(ctx context.Context) (events.OutOfBand, bool) {
	ob, ok := ctx.Value(outOfBandKey{}).(events.OutOfBand)
	// The person accepting their own invite is the joiner flow, not a change
	// behind the daemon's back: it converges like any event (team roles
	// Sentry refused on the invite are set), with no out-of-band alert.
	if ok && ob.Event == "member.accept-invite" {
		return events.OutOfBand{}, false
	}
	return ob, ok
}

// stepKind classifies a planned step by the kind of hand-made change it undoes.
func stepKind(s Step, status events.Status) string {
	switch s.Action {
	case ActRemoveMember, ActDeleteInvite, ActRevokeToken, ActReportToken:
		if status == events.Terminated || status == events.Suspended {
			return KindLeavers
		}
		return KindMembership
	case ActSetOrgRole:
		if status == events.Suspended {
			return KindLeavers // suspend: strip
		}
		return KindOrgRole
	case ActAddTeam, ActRemoveTeam, ActSetTeamRole:
		if status == events.Suspended {
			return KindLeavers
		}
		return KindManagedTeams
	}
	return KindMembership
}

// outOfBandAction is the policy's action for a kind.
func outOfBandAction(p policy.Policy, kind string) string {
	var a string
	switch kind {
	case KindManagedTeams:
		a = p.OutOfBand.ManagedTeams
	case KindOrgRole:
		a = p.OutOfBand.OrgRole
	case KindLeavers:
		a = p.OutOfBand.Leavers
	}
	if a == "" {
		a = policy.OutOfBandRevert
	}
	return a
}

// splitOutOfBand divides a plan's steps into those policy reverts and those
// it leaves in place (their Result set to the action), and says per kind
// what was done.
func splitOutOfBand(p policy.Policy, steps []Step, status events.Status) (apply, left []Step, actions map[string]string) {
	actions = map[string]string{}
	for _, s := range steps {
		k := stepKind(s, status)
		a := outOfBandAction(p, k)
		actions[k] = a
		if a == policy.OutOfBandRevert {
			apply = append(apply, s)
			continue
		}
		s.Result = a
		left = append(left, s)
	}
	return apply, left, actions
}

// outOfBandAlert raises jml.alert.out_of_band naming the actor, and counts
// the change per kind and action.
func (c *Converger) outOfBandAlert(ctx context.Context, email string, ob *OutOfBand, steps []Step) {
	kinds := make([]string, 0, len(ob.Actions))
	for k := range ob.Actions {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		a := ob.Actions[k]
		verb := map[string]string{policy.OutOfBandRevert: "reverted", policy.OutOfBandReport: "reported, left in place", policy.OutOfBandAdopt: "adopted"}[a]
		parts = append(parts, k+" "+verb)
		c.oob.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", k), attribute.String("action", a)))
	}
	changes := make([]string, 0, len(steps))
	for _, s := range steps {
		changes = append(changes, s.Describe())
	}
	summary := fmt.Sprintf("%s changed %s's Sentry access by hand (%s, audit entry %s at %s); policy out_of_band: %s; steps: %s",
		ob.Actor, email, ob.Event, ob.AuditID, ob.At.Format(time.RFC3339), strings.Join(parts, ", "), strings.Join(changes, ", "))
	c.alert(ctx, "out_of_band", email, summary)
}
