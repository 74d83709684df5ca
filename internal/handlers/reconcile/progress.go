package reconcile

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Phases of a run, in order.
const (
	phaseMembers   = "members"
	phaseTeams     = "teams"
	phaseInvites   = "invites"
	phaseDirectory = "directory"
	phaseApply     = "apply"
)

// Progress is a run's progress: items done per phase (and the total when known).
type Progress struct {
	RunID   string         `json:"run_id"`
	Running bool           `json:"running"`
	Done    map[string]int `json:"done"`
	Total   map[string]int `json:"total"`
	Since   time.Time      `json:"since"`
}

// String renders a one-line progress summary.
func (p Progress) String() string {
	s := ""
	for _, ph := range []string{phaseMembers, phaseTeams, phaseInvites, phaseDirectory, phaseApply} {
		d, ok := p.Done[ph]
		t := p.Total[ph]
		if !ok && t == 0 {
			continue
		}
		if t > 0 {
			s += fmt.Sprintf(" %s %d/%d", ph, d, t)
		} else {
			s += fmt.Sprintf(" %s %d", ph, d)
		}
	}
	return s
}

type metrics struct {
	runs     metric.Int64Counter
	halts    metric.Int64Counter
	changes  metric.Int64Counter
	tokens   metric.Int64Counter
	progress metric.Int64Gauge
	invites  metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider) (metrics, error) {
	m := mp.Meter("github.com/sentry-jml/sentry-jml/internal/handlers/reconcile")
	var ms metrics
	var err error
	if ms.runs, err = m.Int64Counter("jml.reconcile.runs", metric.WithDescription("Reconcile runs by status.")); err != nil {
		return ms, err
	}
	if ms.halts, err = m.Int64Counter("jml.reconcile.halts", metric.WithDescription("Reconcile runs halted by the removal brakes.")); err != nil {
		return ms, err
	}
	if ms.changes, err = m.Int64Counter("jml.reconcile.changes", metric.WithDescription("Reconcile steps applied, by action and result.")); err != nil {
		return ms, err
	}
	if ms.tokens, err = m.Int64Counter("jml.token_hygiene.findings", metric.WithDescription("Org auth tokens failing token hygiene.")); err != nil {
		return ms, err
	}
	if ms.progress, err = m.Int64Gauge("jml.reconcile.progress", metric.WithDescription("Items done in the running reconcile, by phase.")); err != nil {
		return ms, err
	}
	if ms.invites, err = m.Int64Counter("jml.invites.actions", metric.WithDescription("Pending-invite job actions.")); err != nil {
		return ms, err
	}
	return ms, nil
}

func statusAttr(s string) attribute.KeyValue { return attribute.String("status", s) }

// progressState is the reconciler's current run, for GET /v1/reconcile/progress.
type progressState struct {
	mu  sync.Mutex
	cur *progress
}

func (ps *progressState) start(ctx context.Context, id string, cb func(Progress), m metrics) *progress {
	p := &progress{ctx: context.WithoutCancel(ctx), id: id, cb: cb, m: m, done: map[string]int{}, tot: map[string]int{}, since: time.Now(), owner: ps}
	ps.mu.Lock()
	ps.cur = p
	ps.mu.Unlock()
	return p
}

// Progress returns the running (or last) run's progress.
func (r *Reconciler) Progress() Progress {
	r.progress.mu.Lock()
	p := r.progress.cur
	r.progress.mu.Unlock()
	if p == nil {
		return Progress{Done: map[string]int{}, Total: map[string]int{}}
	}
	return p.snapshot()
}

type progress struct {
	ctx      context.Context // for metric recording only
	mu       sync.Mutex
	id       string
	cb       func(Progress)
	m        metrics
	done     map[string]int
	tot      map[string]int
	since    time.Time
	finished bool
	last     time.Time
	owner    *progressState
}

func (p *progress) snapshot() Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := Progress{RunID: p.id, Running: !p.finished, Done: map[string]int{}, Total: map[string]int{}, Since: p.since}
	for k, v := range p.done {
		out.Done[k] = v
	}
	for k, v := range p.tot {
		out.Total[k] = v
	}
	return out
}

func (p *progress) add(phase string, n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.done[phase] += n
	d := p.done[phase]
	now := time.Now()
	emit := now.Sub(p.last) >= 200*time.Millisecond
	if emit {
		p.last = now
	}
	p.mu.Unlock()
	if emit {
		p.m.progress.Record(p.ctx, int64(d), metric.WithAttributes(attribute.String("phase", phase)))
		if p.cb != nil {
			p.cb(p.snapshot())
		}
	}
}

func (p *progress) total(phase string, n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.tot[phase] = n
	p.mu.Unlock()
}

func (p *progress) finish() {
	p.mu.Lock()
	p.finished = true
	p.mu.Unlock()
	for ph, d := range p.snapshot().Done {
		p.m.progress.Record(p.ctx, int64(d), metric.WithAttributes(attribute.String("phase", ph)))
	}
	if p.cb != nil {
		p.cb(p.snapshot())
	}
}
