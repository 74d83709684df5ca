package report_test

import (
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/report"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// leaverRecords returns n leavers' records as the log stores them (one
// removal each, with its requests), encoded, so the benchmark decodes them
// like a Range over JetStream would.
func leaverRecords(b *testing.B, n int) [][]byte {
	b.Helper()
	out := make([][]byte, 0, n)
	for i := range n {
		at := t0.Add(time.Duration(i%600) * time.Minute)
		l := newLeaver(fmt.Sprintf("id:E-%06d", i), t0).removed(at)
		e := l.recs[0]
		e.Seq = uint64(i + 1)
		e.V = state.EvidenceV2
		e.Snapshot = &state.Snapshot{PersonKey: e.PersonKey, Email: e.Email, MemberID: "1", OrgRole: "member", Teams: []state.TeamAccess{{Slug: "payments", Role: "admin"}, {Slug: "mobile"}}}
		raw, err := state.EncodeEvidence(e)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

func decoded(raws [][]byte) iter.Seq2[state.Evidence, error] {
	return func(yield func(state.Evidence, error) bool) {
		for _, r := range raws {
			var e state.Evidence
			err := json.Unmarshal(r, &e)
			if !yield(e, err) {
				return
			}
		}
	}
}

// BenchmarkDeprovisioning10k: decode 10,000 leavers' records, build the
// report and render it as HTML (target: <= 2 s, <= 100 MiB peak heap).
// BenchmarkDecodeFloor10k is the floor: only the JSON decode of the same
// bytes.
func BenchmarkDeprovisioning10k(b *testing.B) {
	raws := leaverRecords(b, 10_000)
	b.ResetTimer()
	var peak uint64
	for b.Loop() {
		runtime.GC()
		stop := watchHeap(&peak)
		rep, err := report.Deprovisioning(decoded(raws), report.Options{SLA: time.Hour, Sample: 25, Seed: 1, Now: t0})
		if err != nil {
			b.Fatal(err)
		}
		if err := rep.Write(io.Discard, report.FormatHTML); err != nil {
			b.Fatal(err)
		}
		stop()
	}
	// Peak live heap objects (sampled every millisecond), the input records
	// (about 10 MiB) included.
	b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-heap")
}

// watchHeap samples the heap's live objects until stop, keeping the max in peak.
func watchHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			*peak = max(*peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

func BenchmarkDecodeFloor10k(b *testing.B) {
	raws := leaverRecords(b, 10_000)
	b.ResetTimer()
	for b.Loop() {
		for _, err := range decoded(raws) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
