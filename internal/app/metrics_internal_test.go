package app

import (
	"context"
	"errors"
	"iter"
	"math"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// collected returns the value of every point by instrument name (no labels here).
func collected(t *testing.T, r *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] = p.Value
				}
			}
		}
	}
	return out
}

// appendLog is an evidence log that fails while failing is set.
type appendLog struct {
	state.EvidenceLog
	failing bool
}

func (l *appendLog) Append(_ context.Context, e state.Evidence) (state.Evidence, error) {
	if l.failing {
		return state.Evidence{}, errors.New("store down")
	}
	return e, nil
}

func (l *appendLog) ByPerson(context.Context, string) iter.Seq2[state.Evidence, error] {
	return func(func(state.Evidence, error) bool) {}
}

func TestWorkerMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	pol := policy.Default()
	m, err := newWorkerMetrics(mp, func() policy.Policy { return pol })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }

	got := collected(t, reader)
	for _, name := range []string{"jml_needs_human", "jml_disputed"} {
		if v, ok := got[name]; !ok || v != 0 {
			t.Errorf("%s = %v, %v at start; want 0", name, v, ok)
		}
	}
	for _, name := range []string{"jml_invite_backlog", "jml_org_token_expiry_seconds"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s observed before anything was read", name)
		}
	}

	// Evidence: counted by outcome once written, not when the write fails.
	log := &appendLog{}
	ev := countedLog{log, m}
	ctx := context.Background()
	for _, o := range []converge.Outcome{converge.OutcomeNeedsHuman, converge.OutcomeDisputed, converge.OutcomeApplied, converge.OutcomeNeedsHuman} {
		if _, err := ev.Append(ctx, state.Evidence{PersonKey: "p", Outcome: string(o), Kind: string(o)}); err != nil {
			t.Fatal(err)
		}
	}
	log.failing = true
	if _, err := ev.Append(ctx, state.Evidence{PersonKey: "p", Outcome: string(converge.OutcomeNeedsHuman)}); err == nil {
		t.Fatal("want the append error")
	}
	got = collected(t, reader)
	if got["jml_needs_human"] != 2 || got["jml_disputed"] != 1 {
		t.Errorf("needs_human = %v, disputed = %v; want 2 and 1", got["jml_needs_human"], got["jml_disputed"])
	}

	// Pending invites counted while the member index is warmed.
	members := func(yield func(sentry.Member, error) bool) {
		for _, mb := range []sentry.Member{{ID: "1"}, {ID: "2", Pending: true}, {ID: "3", Pending: true, Expired: true}} {
			if !yield(mb, nil) {
				return
			}
		}
	}
	n := 0
	for range countPending(members, &n) {
	}
	m.setInvites(n)
	if got := collected(t, reader)["jml_invite_backlog"]; got != 2 {
		t.Errorf("jml_invite_backlog = %v, want 2", got)
	}

	// Token age: +Inf without max_age_days, then the oldest token's deadline.
	m.setTokens([]sentry.OrgAuthToken{{ID: "a", DateCreated: now.Add(-10 * 24 * time.Hour)}, {ID: "b", DateCreated: now.Add(-88 * 24 * time.Hour)}})
	if got := collected(t, reader)["jml_org_token_expiry_seconds"]; !math.IsInf(got, 1) {
		t.Errorf("no max age: %v, want +Inf", got)
	}
	pol.TokenHygiene.MaxAgeDays = 90
	if got, want := collected(t, reader)["jml_org_token_expiry_seconds"], (2 * 24 * time.Hour).Seconds(); got != want {
		t.Errorf("max age 90 d, oldest 88 d old: %v, want %v", got, want)
	}
	m.setTokens(nil)
	if got := collected(t, reader)["jml_org_token_expiry_seconds"]; !math.IsInf(got, 1) {
		t.Errorf("no token: %v, want +Inf", got)
	}
}
