package app

import (
	"context"
	"encoding/json"

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
	snap := state.Snapshot{PersonKey: s.PersonKey, Email: s.Email, MemberID: s.MemberID, UserID: s.UserID, OrgRole: s.OrgRole,
		Pending: s.Pending, TakenAt: s.TakenAt, EventID: s.EventID, RegrantedTo: s.RegrantedTo, RestoredAt: s.RestoredAt}
	for slug, role := range s.Teams {
		snap.Teams = append(snap.Teams, state.TeamAccess{Slug: slug, Role: role})
	}
	return a.s.Put(ctx, snap)
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
	Notes   []string         `json:"notes,omitempty"`
}

func (a evidenceLog) RecordEvidence(ctx context.Context, e converge.Evidence) error {
	steps, err := json.Marshal(e.Steps)
	if err != nil {
		return err
	}
	plan, err := json.Marshal(evidencePlan{Outcome: e.Outcome, Reason: e.Reason, Notes: e.Notes})
	if err != nil {
		return err
	}
	rec := state.Evidence{PersonKey: e.PersonKey, Email: e.Email, At: e.At, Kind: e.Kind, Target: e.Target,
		Plan: plan, Steps: steps, Outcome: string(e.Outcome)}
	if e.EventID != "" {
		rec.EventIDs = []string{e.EventID}
	}
	if _, err := a.l.Append(ctx, rec); err != nil {
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
