package app

import (
	"context"
	"encoding/json"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// SnapshotStore adapts durable snapshots to what convergence needs.
func SnapshotStore(s state.Snapshots) converge.Snapshots { return snapshotStore{s} }

// snapshotStore adapts state.Snapshots to what convergence needs.
type snapshotStore struct{ s state.Snapshots }

func (a snapshotStore) SaveSnapshot(ctx context.Context, s converge.Snapshot) error {
	return a.s.Put(ctx, stateSnapshot(s))
}

// stateSnapshot converts a convergence snapshot, teams sorted by slug.
func stateSnapshot(s converge.Snapshot) state.Snapshot {
	snap := state.Snapshot{PersonKey: s.PersonKey, Email: s.Email, MemberID: s.MemberID, UserID: s.UserID, OrgRole: s.OrgRole,
		Pending: s.Pending, TakenAt: s.TakenAt, EventID: s.EventID, RegrantedTo: s.RegrantedTo, RestoredAt: s.RestoredAt}
	for _, slug := range slices.Sorted(maps.Keys(s.Teams)) {
		snap.Teams = append(snap.Teams, state.TeamAccess{Slug: slug, Role: s.Teams[slug]})
	}
	return snap
}

// stampedLog is an evidence log that fills what the request context knows:
// the operator whose admin token made the request (OperatorFrom, never a
// client-supplied name) and the trigger (state.WithTrigger: the event, or
// the reconcile run).
type stampedLog struct{ l state.EvidenceLog }

func (s stampedLog) Append(ctx context.Context, e state.Evidence) (state.Evidence, error) {
	if e.Operator == "" {
		e.Operator = OperatorFrom(ctx)
	}
	if e.Trigger == nil {
		if t, ok := state.TriggerFrom(ctx); ok {
			e.Trigger = &t
		}
	}
	return s.l.Append(ctx, e)
}

func (s stampedLog) ByPerson(ctx context.Context, key string) iter.Seq2[state.Evidence, error] {
	return s.l.ByPerson(ctx, key)
}

func (s stampedLog) Range(ctx context.Context, from, to time.Time) iter.Seq2[state.Evidence, error] {
	return s.l.Range(ctx, from, to)
}

func (a snapshotStore) LatestSnapshot(ctx context.Context, key string) (converge.Snapshot, error) {
	snap, err := a.s.Latest(ctx, key)
	if err != nil {
		return converge.Snapshot{}, err
	}
	out := converge.Snapshot{PersonKey: snap.PersonKey, Email: snap.Email, MemberID: snap.MemberID, UserID: snap.UserID,
		OrgRole: snap.OrgRole, Pending: snap.Pending, TakenAt: snap.TakenAt, EventID: snap.EventID, Teams: map[string]string{},
		RegrantedTo: snap.RegrantedTo, RestoredAt: snap.RestoredAt}
	for _, t := range snap.Teams {
		out.Teams[t.Slug] = t.Role
	}
	return out, nil
}

// evidenceLog adapts state.EvidenceLog to convergence's evidence sink and
// counts the needs_human and disputed records it writes.
type evidenceLog struct {
	l state.EvidenceLog
	m *workerMetrics
}

type evidencePlan struct {
	Outcome converge.Outcome `json:"outcome"`
	Reason  string           `json:"reason,omitempty"`
	Held    string           `json:"held,omitempty"`
	Notes   []string         `json:"notes,omitempty"`
	// OutOfBand names the hand-made change answered and its actor.
	OutOfBand *converge.OutOfBand `json:"out_of_band,omitempty"`
}

func (a evidenceLog) RecordEvidence(ctx context.Context, e converge.Evidence) error {
	steps, err := json.Marshal(e.Steps)
	if err != nil {
		return err
	}
	plan, err := json.Marshal(evidencePlan{Outcome: e.Outcome, Reason: e.Reason, Held: e.Held, Notes: e.Notes, OutOfBand: e.OutOfBand})
	if err != nil {
		return err
	}
	rec := state.Evidence{PersonKey: e.PersonKey, Email: e.Email, At: e.At, Kind: e.Kind, Target: e.Target,
		Plan: plan, Steps: steps, Outcome: string(e.Outcome), Status: e.Status}
	if e.EventID != "" {
		rec.EventIDs = []string{e.EventID}
	}
	if s := e.Snapshot; s != nil {
		snap := stateSnapshot(*s)
		rec.Snapshot = &snap
	}
	for _, r := range e.Requests {
		rec.Requests = append(rec.Requests, state.SentryRequest{Method: r.Method, Path: r.Path, Status: r.Status, At: r.At,
			DurationMS: r.Duration.Milliseconds(), Error: r.Err})
	}
	if _, err := (stampedLog{a.l}).Append(ctx, rec); err != nil {
		return err
	}
	a.m.evidence(ctx, e.Outcome)
	return nil
}

// unresolvedSink lists unresolved events in JetStream.
type unresolvedSink struct{ l *jsstate.UnresolvedList }

func (u unresolvedSink) RecordUnresolved(ctx context.Context, ev events.Event, reason string) error {
	raw, err := events.Marshal(ev)
	if err != nil {
		return err
	}
	return u.l.Put(ctx, jsstate.Unresolved{EventID: ev.ID, Source: ev.Source, Type: string(ev.Type), PersonID: ev.Person.ID,
		Reason: reason, ReceivedAt: ev.ReceivedAt, Event: raw})
}
