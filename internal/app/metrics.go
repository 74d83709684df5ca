package app

import (
	"context"
	"iter"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// workerMetrics are the worker process's metrics that no handler package
// owns: the needs_human and disputed counters (counted where evidence is
// written, so every path counts: events, reconcile, approved runs), and the
// gauges fed by the scheduled jobs (pending invites, org token age).
type workerMetrics struct {
	needsHuman metric.Int64Counter
	disputed   metric.Int64Counter
	now        func() time.Time
	policy     func() policy.Policy

	mu sync.Mutex
	// invites is the number of pending invitations in the organization, as
	// last counted (member index warm-up, pending-invites job); -1 = unknown.
	invites int64
	// tokensRead: the org auth tokens were listed; oldest is the creation
	// time of the oldest active one (zero when there is none).
	tokensRead bool
	oldest     time.Time
}

func newWorkerMetrics(mp metric.MeterProvider, pol func() policy.Policy) (*workerMetrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("github.com/sentry-jml/sentry-jml/internal/app")
	wm := &workerMetrics{now: time.Now, policy: pol, invites: -1}
	var err error
	if wm.needsHuman, err = m.Int64Counter("jml_needs_human",
		metric.WithDescription("Changes the daemon may not make and recorded as needs_human (e.g. an Owner leaver), any path")); err != nil {
		return nil, err
	}
	if wm.disputed, err = m.Int64Counter("jml_disputed",
		metric.WithDescription("Convergences stopped because several Sentry members match one person (no change made)")); err != nil {
		return nil, err
	}
	invites, err := m.Int64ObservableGauge("jml_invite_backlog",
		metric.WithDescription("Pending (not yet accepted) invitations in the Sentry organization, as last listed"))
	if err != nil {
		return nil, err
	}
	expiry, err := m.Float64ObservableGauge("jml_org_token_expiry_seconds", metric.WithUnit("s"),
		metric.WithDescription("Seconds until the oldest org auth token reaches token_hygiene.max_age_days (negative: past it; +Inf: no token or no max age)"))
	if err != nil {
		return nil, err
	}
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if n, ok := wm.inviteBacklog(); ok {
			o.ObserveInt64(invites, n)
		}
		if s, ok := wm.tokenExpiry(); ok {
			o.ObserveFloat64(expiry, s)
		}
		return nil
	}, invites, expiry); err != nil {
		return nil, err
	}
	ctx := context.Background()
	wm.needsHuman.Add(ctx, 0)
	wm.disputed.Add(ctx, 0)
	return wm, nil
}

// evidence counts an evidence record by its outcome once it is written.
func (m *workerMetrics) evidence(ctx context.Context, outcome converge.Outcome) {
	if m == nil {
		return
	}
	switch outcome {
	case converge.OutcomeNeedsHuman:
		m.needsHuman.Add(ctx, 1)
	case converge.OutcomeDisputed:
		m.disputed.Add(ctx, 1)
	}
}

func (m *workerMetrics) setInvites(n int) {
	m.mu.Lock()
	m.invites = int64(n)
	m.mu.Unlock()
}

func (m *workerMetrics) inviteBacklog() (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.invites, m.invites >= 0
}

// setTokens keeps the creation time of the oldest active org auth token.
func (m *workerMetrics) setTokens(active []sentry.OrgAuthToken) {
	var oldest time.Time
	for _, t := range active {
		if oldest.IsZero() || t.DateCreated.Before(oldest) {
			oldest = t.DateCreated
		}
	}
	m.mu.Lock()
	m.tokensRead, m.oldest = true, oldest
	m.mu.Unlock()
}

// tokenExpiry is jml_org_token_expiry_seconds. Sentry's org auth tokens do
// not expire; the only deadline they have is the policy's token hygiene
// max_age_days, after which the token-hygiene job reports (or, with
// action: revoke, revokes) them. The gauge is the time until the oldest
// token reaches it, under the policy in force now; +Inf when there is no
// token or no max age.
func (m *workerMetrics) tokenExpiry() (float64, bool) {
	m.mu.Lock()
	read, oldest := m.tokensRead, m.oldest
	m.mu.Unlock()
	if !read {
		return 0, false
	}
	days := 0
	if m.policy != nil {
		days = m.policy().TokenHygiene.MaxAgeDays
	}
	if oldest.IsZero() || days <= 0 {
		return math.Inf(1), true
	}
	return oldest.Add(time.Duration(days) * 24 * time.Hour).Sub(m.now()).Seconds(), true
}

// countPending passes members through and counts the pending invitations
// among them into *n.
func countPending(members iter.Seq2[sentry.Member, error], n *int) iter.Seq2[sentry.Member, error] {
	return func(yield func(sentry.Member, error) bool) {
		for m, err := range members {
			if err == nil && m.Pending {
				*n++
			}
			if !yield(m, err) {
				return
			}
		}
	}
}
