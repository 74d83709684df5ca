package safety

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// Options wire a Gate.
type Options struct {
	Control  *jsstate.Control
	Presence *jsstate.Presence
	// ID names this replica (the worker's lease owner); Role is shown in the
	// registry ("worker", "all-in-one").
	ID   string
	Role string
	// Alert raises an operator alert (brake_halted). Optional.
	Alert  func(ctx context.Context, kind, person, summary string)
	Logger *slog.Logger
	Meter  metric.MeterProvider
	// Beat is the heartbeat interval (default 2s); a replica whose heartbeat
	// is older than 3 beats and a second is no longer live.
	Beat time.Duration
	Now  func() time.Time
}

// Gate is the one safety gate every Sentry mutation passes (it implements
// sentry.Gate): the operator's pause, the brakes on removals and the
// caller's lease. Run must be running for it to admit anything.
type Gate struct {
	o Options
	// inflight is held shared by each admitted mutation until its request
	// has finished; a replica that sees a pause takes it exclusively before
	// it acknowledges, so nothing it admitted earlier is still on the wire.
	inflight sync.RWMutex

	mu     sync.Mutex
	view   jsstate.ControlState
	seen   uint64 // control revision the view reflects
	synced bool   // the watcher delivered the current value
	kick   chan struct{}

	live    atomic.Int64 // replicas counted live (sticky high: see countLive)
	liveAt  time.Time    // when live was last raised or confirmed; heartbeat goroutine only
	started time.Time

	mHalted   metric.Int64Counter
	mRefusals metric.Int64Counter
}

var _ sentry.Gate = (*Gate)(nil)

// New validates o and returns a Gate; call Run.
func New(o Options) (*Gate, error) {
	if o.Control == nil || o.Presence == nil {
		return nil, errors.New("safety: Control and Presence are required")
	}
	if o.ID == "" {
		return nil, errors.New("safety: ID is required")
	}
	if o.Role == "" {
		o.Role = "worker"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = otel.GetMeterProvider()
	}
	if o.Beat <= 0 {
		o.Beat = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	g := &Gate{o: o, kick: make(chan struct{}, 1), started: o.Now().UTC()}
	g.live.Store(1)
	if err := g.metrics(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Gate) metrics() error {
	m := g.o.Meter.Meter("github.com/sentry-jml/sentry-jml/internal/safety")
	var err error
	if g.mHalted, err = m.Int64Counter("jml_brakes_halted",
		metric.WithDescription("Times the brakes halted removals (more than brakes.max_event_removals_per_minute in 60 s); held until jml approve brakes")); err != nil {
		return fmt.Errorf("safety: metrics: %w", err)
	}
	if g.mRefusals, err = m.Int64Counter("jml_gate_refusals",
		metric.WithDescription("Sentry mutations the safety gate held back, by reason (paused, brakes, lease, starting)")); err != nil {
		return fmt.Errorf("safety: metrics: %w", err)
	}
	ctx := context.Background()
	g.mHalted.Add(ctx, 0)
	for _, k := range []string{sentry.RefusedPaused, sentry.RefusedBrakes, sentry.RefusedLease, refusedStarting} {
		g.mRefusals.Add(ctx, 0, metric.WithAttributes(attribute.String("reason", k)))
	}
	flag := func(b bool) int64 {
		if b {
			return 1
		}
		return 0
	}
	if _, err = m.Int64ObservableGauge("jml_paused", metric.WithDescription("1 while jml pause holds every Sentry mutation (this replica's view)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			v, _, _ := g.View()
			o.Observe(flag(v.Paused))
			return nil
		})); err != nil {
		return fmt.Errorf("safety: metrics: %w", err)
	}
	if _, err = m.Int64ObservableGauge("jml_brakes_held", metric.WithDescription("1 while halted brakes hold every removal until jml approve brakes (this replica's view)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			v, _, _ := g.View()
			o.Observe(flag(v.BrakesHalted))
			return nil
		})); err != nil {
		return fmt.Errorf("safety: metrics: %w", err)
	}
	if _, err = m.Int64ObservableGauge("jml_replicas_live", metric.WithDescription("Live replicas that can change Sentry, as this replica last counted them"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(g.live.Load())
			return nil
		})); err != nil {
		return fmt.Errorf("safety: metrics: %w", err)
	}
	return nil
}

// refusedStarting: the gate has not read the switches yet.
const refusedStarting = "starting"

type approvedKey struct{}

// WithApproved marks ctx as applying an operator-approved reconcile plan
// (run id): its removals were approved by number, so they are not counted
// against the brakes' window — but they are held like every other removal
// while the brakes are halted, and like every mutation while paused.
func WithApproved(ctx context.Context, runID string) context.Context {
	return context.WithValue(ctx, approvedKey{}, runID)
}

func approvedFrom(ctx context.Context) string {
	id, _ := ctx.Value(approvedKey{}).(string)
	return id
}

// Admit implements sentry.Gate.
func (g *Gate) Admit(ctx context.Context, m sentry.Mutation) (func(), error) {
	if !sentry.HasPreSend(ctx) {
		return nil, g.refuse(ctx, sentry.RefusedLease, "no lease held: every Sentry mutation runs under a person's or a job's lease", 0)
	}
	g.inflight.RLock()
	admitted := false
	defer func() {
		if !admitted {
			g.inflight.RUnlock()
		}
	}()
	v, _, synced := g.View()
	switch {
	case !synced:
		return nil, g.refuse(ctx, refusedStarting, "the safety gate has not read the pause and brake switches yet", time.Second)
	case v.Paused:
		return nil, g.refuse(ctx, sentry.RefusedPaused, pausedReason(v), 5*time.Second)
	case m.Removal && v.BrakesHalted:
		return nil, g.refuse(ctx, sentry.RefusedBrakes, brakesReason(v), 10*time.Second)
	}
	// The stored record decides; the view above only refuses early.
	if m.Removal && !m.Retry && approvedFrom(ctx) == "" {
		a, err := g.o.Control.Admit(ctx, 1)
		if err != nil {
			return nil, fmt.Errorf("safety gate: read pause and brakes: %w", err)
		}
		if a.HaltedNow {
			g.halted(ctx)
		}
		switch {
		case a.Paused:
			return nil, g.refuse(ctx, sentry.RefusedPaused, "mutations are paused (jml resume)", 5*time.Second)
		case !a.Allowed:
			return nil, g.refuse(ctx, sentry.RefusedBrakes, "the brakes halted removals (jml approve brakes)", 10*time.Second)
		}
	} else {
		st, _, err := g.o.Control.StateRev(ctx)
		if err != nil {
			return nil, fmt.Errorf("safety gate: read pause and brakes: %w", err)
		}
		switch {
		case st.Paused:
			return nil, g.refuse(ctx, sentry.RefusedPaused, pausedReason(st), 5*time.Second)
		case m.Removal && st.BrakesHalted:
			return nil, g.refuse(ctx, sentry.RefusedBrakes, brakesReason(st), 10*time.Second)
		}
	}
	admitted = true
	var once sync.Once
	return func() { once.Do(g.inflight.RUnlock) }, nil
}

func pausedReason(s jsstate.ControlState) string {
	if s.PausedBy != "" {
		return "mutations are paused by " + s.PausedBy + " (jml resume)"
	}
	return "mutations are paused (jml resume)"
}

func brakesReason(s jsstate.ControlState) string {
	why := "the brakes halted removals"
	if !s.HaltedAt.IsZero() {
		why += " at " + s.HaltedAt.UTC().Format(time.RFC3339)
	}
	return why + "; held until jml approve brakes"
}

func (g *Gate) refuse(ctx context.Context, kind, reason string, after time.Duration) error {
	g.mRefusals.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", kind)))
	return &sentry.Refusal{Kind: kind, Reason: reason, RetryAfter: after}
}

func (g *Gate) halted(ctx context.Context) {
	g.mHalted.Add(ctx, 1)
	g.o.Logger.WarnContext(ctx, "brakes halted: removals are held on every path until jml approve brakes")
	if g.o.Alert != nil {
		g.o.Alert(ctx, "brake_halted", "", "more removals than brakes.max_event_removals_per_minute in 60 s: every removal is held until `jml approve brakes`")
	}
}

// View is this replica's view of the switches, the control revision it
// reflects, and whether the watcher has delivered it yet.
func (g *Gate) View() (jsstate.ControlState, uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view, g.seen, g.synced
}

// Held reports, from this replica's view and without I/O, whether a mutation
// (a removal when removal is set) would be held now: the kind and reason, or
// "" when it would pass on to the stored record's verdict.
func (g *Gate) Held(removal bool) (kind, reason string) {
	v, _, synced := g.View()
	switch {
	case !synced:
		return refusedStarting, "the safety gate has not read the pause and brake switches yet"
	case v.Paused:
		return sentry.RefusedPaused, pausedReason(v)
	case removal && v.BrakesHalted:
		return sentry.RefusedBrakes, brakesReason(v)
	}
	return "", ""
}

// LiveReplicas is how many replicas share the fleet (at least 1): the fleet
// budget paces each at 1/N while Redis is down. The count is sticky upward: a
// lower count is believed only after it has held for liveDecay, so a replica
// whose heartbeats are late (a starved CPU, a slow JetStream) never makes the
// others speed up, which would overrun Sentry's limit; erring toward more
// replicas only paces slower.
func (g *Gate) LiveReplicas() int { return int(max(1, g.live.Load())) }

// liveDecay is how long a lower live count must hold before LiveReplicas
// believes it.
const liveDecay = time.Minute

// countLive folds one heartbeat's count of live replicas into g.live.
func (g *Gate) countLive(n int, now time.Time) {
	cur := int(g.live.Load())
	switch {
	case n >= cur:
		g.live.Store(int64(max(1, n)))
		g.liveAt = now
	case now.Sub(g.liveAt) >= liveDecay:
		g.live.Store(int64(max(1, n)))
		g.liveAt = now
	}
}

// Run watches the switches and heartbeats into the replica registry until
// ctx ends; on the way out it leaves the registry.
func (g *Gate) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.heartbeat(ctx)
	}()
	g.watch(ctx)
	wg.Wait()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = g.o.Presence.Leave(lctx, g.o.ID)
	return nil
}

// watch applies every update of the control record to the view, restarting
// the watcher after an error.
func (g *Gate) watch(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		w, err := g.o.Control.KV().Watch(ctx, jsstate.ControlKey)
		if err != nil {
			g.o.Logger.WarnContext(ctx, "safety gate: control watcher", "err", err, "retry_in", delay.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		empty := true
		for e := range w.Updates() {
			if e == nil { // the current value has been delivered
				if empty {
					g.apply(jsstate.ControlState{}, 0)
				}
				continue
			}
			empty = false
			var st jsstate.ControlState
			if e.Operation() == jetstream.KeyValuePut {
				if st, err = jsstate.DecodeState(e.Value()); err != nil {
					g.o.Logger.ErrorContext(ctx, "safety gate: undecodable control record; holding every mutation", "err", err)
					st = jsstate.ControlState{Paused: true, PausedBy: "undecodable control record"}
				}
			}
			g.apply(st, e.Revision())
		}
		_ = w.Stop()
	}
}

// apply installs st (revision rev) as the view. A pause first waits for the
// mutations in flight to finish, so the heartbeat that acknowledges it
// promises that nothing this replica admitted is still being sent.
func (g *Gate) apply(st jsstate.ControlState, rev uint64) {
	v, _, _ := g.View()
	if st.Paused && !v.Paused {
		g.inflight.Lock()
		g.set(st, rev)
		g.inflight.Unlock()
	} else {
		g.set(st, rev)
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *Gate) set(st jsstate.ControlState, rev uint64) {
	g.mu.Lock()
	g.view, g.synced = st, true
	if rev > g.seen {
		g.seen = rev
	}
	g.mu.Unlock()
}

// liveWithin is how recent a heartbeat must be for its replica to count.
func (g *Gate) liveWithin() time.Duration { return 3*g.o.Beat + time.Second }

func (g *Gate) heartbeat(ctx context.Context) {
	t := time.NewTicker(g.o.Beat)
	defer t.Stop()
	for {
		count := false
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		case <-t.C:
			count = true
		}
		v, seen, synced := g.View()
		if !synced {
			seen = 0 // nothing is enforced yet: acknowledge nothing
		}
		b := jsstate.Beat{ID: g.o.ID, Role: g.o.Role, SeenControl: seen, Paused: v.Paused, At: g.o.Now().UTC(), Started: g.started}
		if err := g.o.Presence.Beat(ctx, b); err != nil && ctx.Err() == nil {
			g.o.Logger.WarnContext(ctx, "safety gate: heartbeat", "err", err)
		}
		if count {
			if bs, err := g.o.Presence.Live(ctx, g.o.Now(), g.liveWithin()); err == nil {
				g.countLive(len(bs), g.o.Now())
			}
		}
	}
}

// PauseResult is what jml pause answers.
type PauseResult struct {
	jsstate.ControlState
	// Revision is the control record's revision carrying the pause.
	Revision uint64 `json:"revision"`
	// Acknowledged lists the live replicas that enforce the pause; Missing
	// those that did not confirm it in time (empty when all did).
	Acknowledged []string `json:"acknowledged"`
	Missing      []string `json:"missing"`
	// Complete is true once every live replica acknowledged.
	Complete bool `json:"complete"`
}

// Pause pauses every mutation fleet-wide and waits (up to wait) until every
// live replica has acknowledged it: from then on none sends a mutation, and
// none still has one in flight.
func (g *Gate) Pause(ctx context.Context, by string, wait time.Duration) (PauseResult, error) {
	st, rev, err := g.o.Control.SetPaused(ctx, true, by)
	if err != nil {
		return PauseResult{}, err
	}
	res := PauseResult{ControlState: st, Revision: rev, Acknowledged: []string{}, Missing: []string{}}
	deadline := g.o.Now().Add(wait)
	for {
		bs, err := g.o.Presence.Live(ctx, g.o.Now(), g.liveWithin())
		if err != nil {
			return res, err
		}
		res.Acknowledged, res.Missing = res.Acknowledged[:0], res.Missing[:0]
		for _, b := range bs {
			// A replica at or past the pause's revision enforces it (or saw a
			// resume that came later).
			if b.SeenControl >= rev {
				res.Acknowledged = append(res.Acknowledged, b.ID)
			} else {
				res.Missing = append(res.Missing, b.ID)
			}
		}
		if len(res.Missing) == 0 && len(res.Acknowledged) > 0 {
			res.Complete = true
			return res, nil
		}
		if !g.o.Now().Before(deadline) {
			// No live replica at all is complete too: nothing can send.
			res.Complete = len(res.Missing) == 0
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Resume lets mutations go again.
func (g *Gate) Resume(ctx context.Context, by string) (jsstate.ControlState, error) {
	st, _, err := g.o.Control.SetPaused(ctx, false, by)
	return st, err
}

// ApproveBrakes records by's approval of halted brakes (see
// jsstate.Control.ApproveBrakes).
func (g *Gate) ApproveBrakes(ctx context.Context, by string) (jsstate.ControlState, bool, error) {
	return g.o.Control.ApproveBrakes(ctx, by)
}

// State reads the switches as stored.
func (g *Gate) State(ctx context.Context) (jsstate.ControlState, error) {
	return g.o.Control.State(ctx)
}

// Control is the switch board the gate reads (checkpoints share its bucket).
func (g *Gate) Control() *jsstate.Control { return g.o.Control }

// Replicas lists the live replicas and what they enforce (jml status).
func (g *Gate) Replicas(ctx context.Context) ([]jsstate.Beat, error) {
	bs, err := g.o.Presence.Live(ctx, g.o.Now(), g.liveWithin())
	if bs == nil {
		bs = []jsstate.Beat{}
	}
	return bs, err
}
