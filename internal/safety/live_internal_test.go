package safety

import (
	"testing"
	"time"
)

// TestLiveReplicasIsStickyUpward: the fleet budget paces each replica at 1/N
// while Redis is down, so a replica whose heartbeat is late must not make N
// drop at once (the others would speed up past Sentry's limit); a lower count
// is believed once it has held for liveDecay, a higher one at once.
func TestLiveReplicasIsStickyUpward(t *testing.T) {
	g := &Gate{}
	g.live.Store(1)
	t0 := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	g.countLive(3, t0)
	if got := g.LiveReplicas(); got != 3 {
		t.Fatalf("after 3 live: %d", got)
	}
	g.countLive(1, t0.Add(10*time.Second)) // two heartbeats late
	if got := g.LiveReplicas(); got != 3 {
		t.Fatalf("a late heartbeat lowered N to %d at once", got)
	}
	g.countLive(3, t0.Add(20*time.Second)) // back: confirms 3 and restarts the clock
	g.countLive(2, t0.Add(20*time.Second+liveDecay-time.Second))
	if got := g.LiveReplicas(); got != 3 {
		t.Fatalf("lowered to %d before liveDecay", got)
	}
	g.countLive(2, t0.Add(20*time.Second+liveDecay))
	if got := g.LiveReplicas(); got != 2 {
		t.Fatalf("a replica gone for liveDecay still counted: %d", got)
	}
	g.countLive(0, t0.Add(20*time.Second+3*liveDecay))
	if got := g.LiveReplicas(); got != 1 {
		t.Fatalf("at least one replica (this one): %d", got)
	}
}
