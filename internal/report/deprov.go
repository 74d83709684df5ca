package report

import (
	"encoding/json"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Why an SLA was missed (Row.Why).
const (
	WhyMet         = ""
	WhyBrake       = "held by a brake"
	WhyNeedsHuman  = "needs a human"
	WhyPaused      = "paused"
	WhyUnavailable = "Sentry unavailable"
	WhyLate        = "late"            // removed, but after the SLA, with nothing holding it
	WhyPending     = "not removed yet" // no confirmation and no known cause
	WhyNoHRTime    = "no HR time"      // found by a reconcile run: no HR effective time to measure from
)

// Options select and shape a deprovisioning report.
type Options struct {
	From, To time.Time
	SLA      time.Duration // default 1h
	// Sample, when > 0, marks that many rows, chosen at random with Seed:
	// the same records, sample size and seed give the same sample.
	Sample int
	Seed   uint64
	// Now is when the report was made (rows still open are measured to it).
	Now time.Time
}

// Row is one leaver.
type Row struct {
	PersonKey   string     `json:"person_key"`
	Email       string     `json:"email"`
	EventID     string     `json:"event_id,omitempty"`
	Source      string     `json:"source,omitempty"`
	RunID       string     `json:"run_id,omitempty"`
	EffectiveAt *time.Time `json:"hr_effective_at"`
	AcceptedAt  *time.Time `json:"accepted_at"`
	ConfirmedAt *time.Time `json:"removal_confirmed_at"`
	// TimeToRevoke is ConfirmedAt minus EffectiveAt (when both are known),
	// never negative: a removal before the effective time counts as zero.
	TimeToRevoke   *Duration `json:"time_to_revoke_seconds"`
	TokensRevoked  int       `json:"tokens_revoked"`
	TokensReported int       `json:"tokens_reported"`
	SLAMet         bool      `json:"sla_met"`
	Why            string    `json:"why_not,omitempty"`
	Detail         string    `json:"detail,omitempty"`
	Sampled        bool      `json:"sampled,omitempty"`
	// Records are the sequence numbers of the evidence records behind the row.
	Records []uint64 `json:"evidence_seqs"`
}

// Duration is a duration written as seconds in JSON.
type Duration time.Duration

// MarshalJSON writes seconds (with milliseconds).
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(d).Seconds())), nil
}

// Summary is the report's head figures.
type Summary struct {
	Leavers   int            `json:"leavers"`
	Removed   int            `json:"removed"`
	Met       int            `json:"sla_met"`
	Breaches  int            `json:"sla_breaches"`
	P50       Duration       `json:"p50_seconds"`
	P95       Duration       `json:"p95_seconds"`
	Max       Duration       `json:"max_seconds"`
	ByWhy     map[string]int `json:"breaches_by_cause"`
	Within1h  int            `json:"removed_within_1h"`
	Within4h  int            `json:"removed_within_4h"`
	Measured  int            `json:"measured"`
	SLASecond float64        `json:"sla_seconds"`
}

// Control is one control of the mapping and how the window fares against it.
type Control struct {
	ID          string `json:"id"`
	Framework   string `json:"framework"`
	Requirement string `json:"requirement"`
	Threshold   string `json:"threshold"`
	Within      int    `json:"within_threshold"`
	Of          int    `json:"of"`
	Met         bool   `json:"met"`
}

// Report is a deprovisioning report.
type Report struct {
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	SLA         Duration  `json:"sla_seconds"`
	GeneratedAt time.Time `json:"generated_at"`
	Sample      int       `json:"sample_size,omitempty"`
	Seed        uint64    `json:"sample_seed,omitempty"`
	Summary     Summary   `json:"summary"`
	Controls    []Control `json:"controls"`
	Rows        []Row     `json:"rows"`
	// Histogram counts measured times to revoke per bucket (HistogramBounds).
	Histogram []int `json:"histogram"`
}

// HistogramBounds are the upper bounds of the histogram's buckets (the
// last bucket is everything above the last bound).
var HistogramBounds = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	2 * time.Hour, 4 * time.Hour, 24 * time.Hour}

// planView is what the report reads of a record's plan.
type planView struct {
	Reason string `json:"reason"`
	Held   string `json:"held"`
}

type stepView struct {
	Action string `json:"action"`
	Result string `json:"result"`
	At     string `json:"at"`
}

type acc struct {
	row       Row
	held      string // last hold kind seen
	human     string
	unavail   string
	effective time.Time
}

// Deprovisioning builds the report from the records (oldest first) of the
// window: every record of a person whose desired status was terminated
// makes that person a leaver. Records of other people are skipped.
func Deprovisioning(records iter.Seq2[state.Evidence, error], o Options) (*Report, error) {
	if o.SLA <= 0 {
		o.SLA = time.Hour
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	byPerson := map[string]*acc{}
	var order []string
	for e, err := range records {
		if err != nil {
			return nil, err
		}
		if e.Status != "terminated" || e.PersonKey == "" {
			continue
		}
		a := byPerson[e.PersonKey]
		if a == nil {
			a = &acc{row: Row{PersonKey: e.PersonKey, Email: e.Email}}
			byPerson[e.PersonKey] = a
			order = append(order, e.PersonKey)
		}
		a.add(e)
	}
	rep := &Report{From: o.From, To: o.To, SLA: Duration(o.SLA), GeneratedAt: o.Now.UTC(), Sample: o.Sample, Seed: o.Seed,
		Histogram: make([]int, len(HistogramBounds)+1)}
	sort.Strings(order)
	rep.Rows = make([]Row, 0, len(order))
	var ttrs []time.Duration
	sum := Summary{ByWhy: map[string]int{}, SLASecond: o.SLA.Seconds()}
	for _, k := range order {
		r := byPerson[k].finish(o)
		sum.Leavers++
		if r.ConfirmedAt != nil {
			sum.Removed++
		}
		if r.TimeToRevoke != nil {
			d := time.Duration(*r.TimeToRevoke)
			ttrs = append(ttrs, d)
			sum.Measured++
			if d <= time.Hour {
				sum.Within1h++
			}
			if d <= 4*time.Hour {
				sum.Within4h++
			}
			b, _ := slices.BinarySearch(HistogramBounds, d)
			rep.Histogram[b]++
		}
		if r.SLAMet {
			sum.Met++
		} else {
			sum.Breaches++
			sum.ByWhy[r.Why]++
		}
		rep.Rows = append(rep.Rows, r)
	}
	slices.Sort(ttrs)
	if len(ttrs) > 0 {
		sum.P50, sum.P95, sum.Max = Duration(quantile(ttrs, 0.50)), Duration(quantile(ttrs, 0.95)), Duration(ttrs[len(ttrs)-1])
	}
	rep.Summary = sum
	rep.Controls = controls(sum, o.SLA)
	if o.Sample > 0 {
		idx := make([]int, len(rep.Rows))
		for i := range idx {
			idx[i] = i
		}
		rnd := rand.New(rand.NewPCG(o.Seed, 0x6a6d6c)) // rows are sorted by person key: same input, same sample
		rnd.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		for _, i := range idx[:min(o.Sample, len(idx))] {
			rep.Rows[i].Sampled = true
		}
	}
	return rep, nil
}

// quantile is the nearest-rank quantile of sorted ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	i := int(float64(len(ds))*q+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ptr(t time.Time) *time.Time { t = t.UTC(); return &t }

func (a *acc) add(e state.Evidence) {
	r := &a.row
	r.Records = append(r.Records, e.Seq)
	if t := e.Trigger; t != nil {
		if r.EventID == "" && t.EventID != "" {
			r.EventID, r.Source = t.EventID, t.Source
		}
		if t.RunID != "" && r.RunID == "" {
			r.RunID = t.RunID
		}
		if r.AcceptedAt == nil && !t.ReceivedAt.IsZero() {
			r.AcceptedAt = ptr(t.ReceivedAt)
		}
		if a.effective.IsZero() {
			switch {
			case !t.EffectiveAt.IsZero():
				a.effective = t.EffectiveAt
			case !t.OccurredAt.IsZero():
				a.effective = t.OccurredAt
			}
		}
	}
	var pv planView
	_ = json.Unmarshal(e.Plan, &pv)
	switch e.Outcome {
	case "halted":
		a.held = pv.Held
		if a.held == "" {
			a.held = "brakes"
			if strings.Contains(strings.ToLower(pv.Reason), "pause") {
				a.held = "paused"
			}
		}
	case "needs_human", "disputed":
		a.human = pv.Reason
	case "error":
		a.unavail = pv.Reason
	}
	for _, q := range e.Requests {
		if q.Status == 0 || q.Status == 429 || q.Status >= 500 {
			a.unavail = fmt.Sprintf("%s %s answered %d %s", q.Method, q.Path, q.Status, q.Error)
		}
	}
	var steps []stepView
	_ = json.Unmarshal(e.Steps, &steps)
	for _, s := range steps {
		switch s.Action {
		case "remove_member", "delete_invite":
			if (s.Result == "done" || s.Result == "already_gone") && r.ConfirmedAt == nil {
				at := e.At
				if t, err := time.Parse(time.RFC3339Nano, s.At); err == nil {
					at = t
				}
				// The DELETE's own answer is the confirmation when recorded.
				for _, q := range e.Requests {
					member := strings.Contains(q.Path, "/members/") || strings.Contains(q.Path, "/Users/")
					if q.Method == "DELETE" && member && (q.Status >= 200 && q.Status < 300 || q.Status == 404) {
						at = q.At.Add(time.Duration(q.DurationMS) * time.Millisecond)
						break
					}
				}
				r.ConfirmedAt = ptr(at)
			}
		case "revoke_token":
			if s.Result == "done" || s.Result == "already_gone" {
				r.TokensRevoked++
			}
		case "report_token":
			r.TokensReported++
		}
	}
	if r.ConfirmedAt == nil && e.Outcome == "in_sync" {
		// "already removed": nothing was left to remove at this record.
		r.ConfirmedAt = ptr(e.At)
		r.Detail = "already removed"
	}
}

func (a *acc) finish(o Options) Row {
	r := a.row
	if !a.effective.IsZero() {
		r.EffectiveAt = ptr(a.effective)
	}
	if r.EffectiveAt != nil && r.ConfirmedAt != nil {
		d := max(0, r.ConfirmedAt.Sub(*r.EffectiveAt))
		dd := Duration(d)
		r.TimeToRevoke = &dd
	}
	cause := func() (string, string) {
		switch {
		case a.human != "":
			return WhyNeedsHuman, a.human
		case a.held == "paused":
			return WhyPaused, "every mutation was paused (jml pause)"
		case a.held != "":
			return WhyBrake, "removals held by the brakes until approved"
		case a.unavail != "":
			return WhyUnavailable, a.unavail
		}
		return "", ""
	}
	switch {
	case r.EffectiveAt == nil:
		r.Why, r.Detail = WhyNoHRTime, "removed by reconcile run "+r.RunID+"; no HR effective time to measure from"
	case r.ConfirmedAt == nil:
		r.Why, r.Detail = cause()
		if r.Why == "" {
			r.Why = WhyPending
		}
		if o.Now.Sub(*r.EffectiveAt) <= o.SLA && r.Why == WhyPending {
			r.Why, r.Detail = WhyPending, "within the SLA so far"
		}
	case time.Duration(*r.TimeToRevoke) <= o.SLA:
		r.SLAMet = true
	default:
		r.Why, r.Detail = cause()
		if r.Why == "" {
			r.Why = WhyLate
		}
	}
	return r
}

func controls(s Summary, sla time.Duration) []Control {
	m := s.Met
	n := s.Leavers
	return []Control{
		{ID: "CC6.2", Framework: "SOC 2 (2017 TSC)", Requirement: "Access of users no longer authorized is removed (deregistration)",
			Threshold: "company SLA " + human(sla), Within: m, Of: n, Met: m == n},
		{ID: "CC6.3", Framework: "SOC 2 (2017 TSC)", Requirement: "Access is removed on role change or termination",
			Threshold: "company SLA " + human(sla), Within: m, Of: n, Met: m == n},
		{ID: "A.5.18", Framework: "ISO/IEC 27001:2022", Requirement: "Access rights are removed on termination",
			Threshold: "company SLA " + human(sla), Within: m, Of: n, Met: m == n},
		{ID: "8.2.5", Framework: "PCI DSS v4.0", Requirement: "Access for terminated users is immediately revoked",
			Threshold: "immediately (measured against the SLA " + human(sla) + ")", Within: m, Of: n, Met: m == n},
		{ID: "PS-4", Framework: "FedRAMP Moderate", Requirement: "Disable system access on termination",
			Threshold: "4h", Within: s.Within4h, Of: n, Met: s.Within4h == n},
		{ID: "PS-4", Framework: "FedRAMP High", Requirement: "Disable system access on termination",
			Threshold: "1h", Within: s.Within1h, Of: n, Met: s.Within1h == n},
	}
}
