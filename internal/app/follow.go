package app

import (
	"context"
	"errors"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/follow"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// newFollower builds the audit-log follower (issue 18) when o.AuditPoll > 0.
// Its convergence requests go through JML_EVENTS and the worker like any
// event; a gap starts a full reconcile as a job of this process.
func (w *Worker) newFollower(ctx context.Context, me *sentry.Member, jo jsstate.Options) error {
	if w.o.AuditPoll <= 0 {
		return nil
	}
	cur, err := jsstate.OpenFollowCursor(ctx, w.js, jo)
	if err != nil {
		return err
	}
	w.follower, err = follow.New(follow.Options{
		Sentry: w.o.Sentry, Cursor: cur, Publisher: events.NewPublisher(w.js, w.o.Telemetry.TracerProvider, w.o.Telemetry.Propagator),
		SelfUserID: me.UserID(), SelfEmail: me.Email, Alert: w.alert, RequestReconcile: w.gapReconcile,
		Logger: w.o.Logger.With("job", "audit-follower"), MeterProvider: w.o.Telemetry.MeterProvider,
	})
	return err
}

// gapReconcile starts a full reconcile after an audit-log gap, as a job of
// this process (jml jobs shows it); a run already in progress covers it.
func (w *Worker) gapReconcile(ctx context.Context, reason string) error {
	s, err := w.reconcile()
	if err != nil {
		return err
	}
	id := s.rec.NewRunID()
	w.jobs.start(context.WithoutCancel(ctx), "reconcile", "audit-follower", id, nil, func(ctx context.Context) (any, error) {
		sum, err := s.rec.Run(ctx, reconcile.RunOptions{Trigger: "audit-gap", RunID: id})
		if errors.Is(err, reconcile.ErrBusy) {
			w.o.Logger.InfoContext(ctx, "audit-log gap: a reconcile is already running and covers it", "reason", reason)
			return nil, nil
		}
		return sum, err
	})
	w.o.Logger.WarnContext(ctx, "audit-log gap: full reconcile started", "reason", reason, "run_id", id)
	return nil
}

// followJobs is the follower's scheduled poll: fleet-wide (the scheduler's
// leader lock), every AuditPoll.
func (w *Worker) followJobs() []schedJob {
	if w.follower == nil {
		return nil
	}
	return []schedJob{{"audit-follower", gocron.DurationJob(w.o.AuditPoll), func(ctx context.Context) error {
		_, err := w.follower.Poll(ctx)
		if errors.Is(err, jsstate.ErrCursorMoved) {
			return nil // another replica polled this tick
		}
		return err
	}, true}}
}

// AuditPollEvery is the follower's poll interval (0: off).
func (w *Worker) AuditPollEvery() time.Duration { return w.o.AuditPoll }
