package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// WorkerOptions are the worker's dependencies.
type WorkerOptions struct {
	NC        *nats.Conn
	Coord     state.Coordinator
	Sentry    *sentry.Client
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	Owner     string
	Protected []string
	Streams   events.StreamOptions
	Ready     *Readiness
	// TokenCheckInterval is how often the scheduler re-checks the Sentry token (default 30s).
	TokenCheckInterval time.Duration
}

// CheckSentryToken calls members/me and reports the service user's identity; a
// 401/403 means the token is not usable.
func CheckSentryToken(ctx context.Context, c *sentry.Client) (*sentry.Member, error) {
	me, err := c.Me(ctx)
	if err != nil {
		return nil, fmt.Errorf("sentry token check (GET /api/0/organizations/%s/members/me/): %w", c.Org(), err)
	}
	return me, nil
}

// RunWorker runs the consumer and the scheduler until ctx is cancelled.
func RunWorker(ctx context.Context, o WorkerOptions) error {
	log := o.Logger
	js, err := jetstream.New(o.NC)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := events.EnsureStreams(ctx, js, o.Streams); err != nil {
		return err
	}
	dir, err := jsstate.OpenDirectory(ctx, js, jsstate.Options{Replicas: o.Streams.Replicas})
	if err != nil {
		return err
	}
	me, err := CheckSentryToken(ctx, o.Sentry)
	if o.Ready != nil {
		o.Ready.SetSentry(err)
	}
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "sentry service user", "member_id", me.ID, "role", me.OrgRole, "org", o.Sentry.Org())
	conv, err := converge.New(converge.Options{
		Sentry: o.Sentry, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole, Policy: o.Policy,
		Index: converge.NewMemberIndex(), Target: o.Target, Logger: log, TracerProvider: o.Telemetry.TracerProvider,
	})
	if err != nil {
		return err
	}
	w, err := worker.New(worker.Options{
		JS: js, Dedupe: o.Coord, Leases: o.Coord, Directory: dir, Converger: conv, Owner: o.Owner,
		Logger: log, TracerProvider: o.Telemetry.TracerProvider, MeterProvider: o.Telemetry.MeterProvider,
		Propagator: o.Telemetry.Propagator,
	})
	if err != nil {
		return err
	}

	sched, err := newScheduler(o)
	if err != nil {
		return err
	}
	sched.Start()
	defer func() {
		if err := sched.Shutdown(); err != nil {
			log.Warn("scheduler shutdown", "err", err)
		}
	}()
	return w.Run(ctx)
}

// newScheduler builds the gocron scheduler. Jobs that must run once across the
// fleet take the coordination store's lock; per-replica jobs (the token check,
// which feeds this replica's /readyz) do not.
func newScheduler(o WorkerOptions) (gocron.Scheduler, error) {
	interval := o.TokenCheckInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	s, err := gocron.NewScheduler(gocron.WithLocation(time.UTC), gocron.WithStopTimeout(20*time.Second),
		gocron.WithGlobalJobOptions(gocron.WithEventListeners(gocron.AfterJobRunsWithPanic(func(_ uuid.UUID, name string, r any) {
			o.Logger.Error("scheduled job panicked", "job", name, "panic", fmt.Sprint(r))
		}))))
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	_, err = s.NewJob(gocron.DurationJob(interval), gocron.NewTask(func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := CheckSentryToken(ctx, o.Sentry)
		if errors.Is(err, context.Canceled) {
			return err
		}
		if o.Ready != nil {
			o.Ready.SetSentry(err)
		}
		if err != nil {
			o.Logger.ErrorContext(ctx, "sentry token check failed; /readyz reports unavailable", "err", err)
		}
		return err
	}), gocron.WithName("sentry-token-check"), gocron.WithSingletonMode(gocron.LimitModeReschedule))
	if err != nil {
		return nil, fmt.Errorf("scheduler job: %w", err)
	}
	return s, nil
}
