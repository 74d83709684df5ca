package app

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkFollowerRevertLatency: a hand-made change to a managed team (maya
// adds george to security) is reverted within 2 × the poll interval (p99)
// after Sentry recorded it. The clock starts when the sandbox has answered
// the change (its audit entry is written by then) and stops when the model
// shows the membership gone. Poll: 100ms.
func BenchmarkFollowerRevertLatency(b *testing.B) {
	const every = 100 * time.Millisecond
	r := newFollowRigPoll(b, "", every)
	r.georgeConverged()
	id := r.member("george.miller@acme.test").ID
	var lat []time.Duration
	for b.Loop() {
		r.as("maya.manager@acme.test", http.MethodPost, "/api/0/organizations/acme/members/"+id+"/teams/security/", "")
		lat = append(lat, r.waitFor("revert", func() bool {
			_, in := r.member("george.miller@acme.test").Teams["security"]
			return !in
		}))
	}
	b.StopTimer()
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.50).Milliseconds()), "p50_ms")
	b.ReportMetric(float64(p(0.99).Milliseconds()), "p99_ms")
	b.ReportMetric(float64(p(0.99))/float64(every), "p99/poll")
	if p(0.99) > 2*every {
		b.Errorf("p99 %v > 2 × poll %v", p(0.99), every)
	}
}
