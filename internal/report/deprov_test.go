package report_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/report"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// leaver builds the records the daemon writes for a leaver whose HR
// termination takes effect at eff and is received at recv.
type leaver struct {
	key  string
	eff  time.Time
	recs []state.Evidence
}

func newLeaver(key string, eff time.Time) *leaver { return &leaver{key: key, eff: eff} }

func (l *leaver) trig() *state.Trigger {
	return &state.Trigger{Source: "generic", EventID: "ev-" + l.key, OccurredAt: l.eff.Add(-time.Hour), EffectiveAt: l.eff, ReceivedAt: l.eff.Add(-50 * time.Minute)}
}

func (l *leaver) record(at time.Time, outcome, plan string, steps string, reqs ...state.SentryRequest) *leaver {
	l.recs = append(l.recs, state.Evidence{PersonKey: l.key, Email: l.key + "@acme.test", At: at, Kind: "convergence", Status: "terminated",
		Outcome: outcome, Plan: json.RawMessage(plan), Steps: json.RawMessage(steps), Trigger: l.trig(), Requests: reqs})
	return l
}

func (l *leaver) removed(at time.Time) *leaver {
	return l.record(at, "applied", `{"outcome":"applied"}`,
		fmt.Sprintf(`[{"action":"remove_member","result":"done","at":%q},{"action":"revoke_token","result":"done"},{"action":"report_token","result":"reported"}]`, at.Format(time.RFC3339Nano)),
		state.SentryRequest{Method: "GET", Path: "/api/0/organizations/acme/members/1/", Status: 200, At: at.Add(-time.Second)},
		state.SentryRequest{Method: "DELETE", Path: "/api/0/organizations/acme/members/1/", Status: 204, At: at, DurationMS: 250})
}

func all(ls ...*leaver) iter.Seq2[state.Evidence, error] {
	return func(yield func(state.Evidence, error) bool) {
		seq := uint64(0)
		for _, l := range ls {
			for _, e := range l.recs {
				seq++
				e.Seq = seq
				if !yield(e, nil) {
					return
				}
			}
		}
		// A joiner's record is not a leaver's.
		yield(state.Evidence{Seq: seq + 1, PersonKey: "joiner", Status: "active", Outcome: "applied", At: t0}, nil)
	}
}

// Every kind of SLA breach, and a met SLA.
func TestDeprovisioningBreachKinds(t *testing.T) {
	met := newLeaver("met", t0).removed(t0.Add(10 * time.Minute))
	late := newLeaver("late", t0).removed(t0.Add(3 * time.Hour))
	brake := newLeaver("brake", t0).
		record(t0.Add(time.Minute), "halted", `{"outcome":"halted","reason":"removal brakes: 12 removals in 10m","held":"brakes"}`, `[{"action":"remove_member"}]`).
		removed(t0.Add(5 * time.Hour))
	paused := newLeaver("paused", t0).
		record(t0.Add(time.Minute), "halted", `{"outcome":"halted","reason":"paused by alice","held":"paused"}`, `[{"action":"remove_member"}]`)
	human := newLeaver("human", t0).
		record(t0.Add(time.Minute), "needs_human", `{"outcome":"needs_human","reason":"the leaver is the last owner"}`, `[]`)
	down := newLeaver("down", t0).
		record(t0.Add(time.Minute), "error", `{"outcome":"error","reason":"sentry: 503"}`, `[]`,
			state.SentryRequest{Method: "GET", Path: "/api/0/organizations/acme/members/", Status: 503, At: t0.Add(time.Minute)}).
		removed(t0.Add(2 * time.Hour))
	early := newLeaver("early", t0).removed(t0.Add(-30 * time.Minute)) // future-dated, removed before? counts as zero
	rep, err := report.Deprovisioning(all(met, late, brake, paused, human, down, early), report.Options{SLA: time.Hour, Now: t0.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"met": "", "early": "", "late": report.WhyLate, "brake": report.WhyBrake, "paused": report.WhyPaused,
		"human": report.WhyNeedsHuman, "down": report.WhyUnavailable}
	if len(rep.Rows) != len(want) {
		t.Fatalf("%d rows, want %d (the joiner is no leaver)", len(rep.Rows), len(want))
	}
	for _, r := range rep.Rows {
		if r.Why != want[r.PersonKey] || r.SLAMet != (want[r.PersonKey] == "") {
			t.Errorf("%s: met=%v why=%q (%s), want why %q", r.PersonKey, r.SLAMet, r.Why, r.Detail, want[r.PersonKey])
		}
	}
	byKey := map[string]report.Row{}
	for _, r := range rep.Rows {
		byKey[r.PersonKey] = r
	}
	m := byKey["met"]
	if m.TimeToRevoke == nil || time.Duration(*m.TimeToRevoke) != 10*time.Minute+250*time.Millisecond || m.TokensRevoked != 1 || m.TokensReported != 1 ||
		!m.AcceptedAt.Equal(t0.Add(-50*time.Minute)) || !m.EffectiveAt.Equal(t0) {
		t.Fatalf("met row: %+v ttr=%v", m, m.TimeToRevoke)
	}
	if e := byKey["early"]; e.TimeToRevoke == nil || *e.TimeToRevoke != 0 {
		t.Fatalf("a removal before the effective time counts as zero: %+v", e)
	}
	s := rep.Summary
	if s.Leavers != 7 || s.Met != 2 || s.Breaches != 5 || s.Removed != 5 || s.ByWhy[report.WhyBrake] != 1 || s.ByWhy[report.WhyPaused] != 1 {
		t.Fatalf("summary %+v", s)
	}
	if time.Duration(s.Max) != 5*time.Hour+250*time.Millisecond || time.Duration(s.P50) != 2*time.Hour+250*time.Millisecond {
		t.Fatalf("p50 %v max %v", time.Duration(s.P50), time.Duration(s.Max))
	}
	for _, c := range rep.Controls {
		if c.Met {
			t.Errorf("control %s %s met with breaches", c.Framework, c.ID)
		}
	}
}

func TestSampleIsReproducibleAndFormatsAgree(t *testing.T) {
	var ls []*leaver
	for i := range 60 {
		ls = append(ls, newLeaver(fmt.Sprintf("p%03d", i), t0).removed(t0.Add(time.Duration(i)*time.Minute)))
	}
	build := func(seed uint64) *report.Report {
		r, err := report.Deprovisioning(all(ls...), report.Options{SLA: 30 * time.Minute, Sample: 25, Seed: seed, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	picked := func(r *report.Report) string {
		var b strings.Builder
		n := 0
		for _, row := range r.Rows {
			if row.Sampled {
				b.WriteString(row.PersonKey + ",")
				n++
			}
		}
		if n != 25 {
			t.Fatalf("sampled %d rows, want 25", n)
		}
		return b.String()
	}
	a, b, c := build(7), build(7), build(8)
	if picked(a) != picked(b) || picked(a) == picked(c) {
		t.Fatalf("same seed must give the same sample, another seed another: %s / %s", picked(a), picked(c))
	}
	var jb, cb bytes.Buffer
	if err := a.Write(&jb, report.FormatJSON); err != nil {
		t.Fatal(err)
	}
	if err := a.Write(&cb, report.FormatCSV); err != nil {
		t.Fatal(err)
	}
	var back struct{ Rows []map[string]any }
	if err := json.Unmarshal(jb.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	lines, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines)-1 != len(back.Rows) || len(back.Rows) != 60 {
		t.Fatalf("csv %d rows, json %d", len(lines)-1, len(back.Rows))
	}
	for i, row := range back.Rows {
		for j, col := range report.CSVHeader {
			if _, ok := row[col]; !ok && col != "sampled" && col != "why_not" && col != "detail" && col != "event_id" && col != "source" && col != "run_id" {
				t.Fatalf("json row lacks %s", col)
			}
			if col == "person_key" && lines[i+1][j] != row[col] {
				t.Fatalf("row %d differs: %s vs %v", i, lines[i+1][j], row[col])
			}
		}
	}
}
