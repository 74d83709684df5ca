package app

import (
	"context"
	"iter"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

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

// countedLog is an evidence log that counts the needs_human and disputed
// records written (jml_needs_human, jml_disputed), once appended.
type countedLog struct {
	state.EvidenceLog
	m *workerMetrics
}

func (c countedLog) Append(ctx context.Context, e state.Evidence) (state.Evidence, error) {
	out, err := c.EvidenceLog.Append(ctx, e)
	if err != nil {
		return out, err
	}
	c.m.evidence(ctx, converge.Outcome(e.Outcome))
	return out, nil
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
