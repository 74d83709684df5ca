package memstate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
	"github.com/sentry-jml/sentry-jml/internal/state/statetest"
)

func TestConformance(t *testing.T) {
	t.Run("memstate", func(t *testing.T) {
		statetest.RunTests(t, func(t *testing.T) statetest.Harness {
			clock := clockwork.NewFakeClock()
			s := memstate.New(clock)
			t.Cleanup(func() { _ = s.Close() })
			return statetest.Harness{
				Coord:   s,
				Advance: clock.Advance,
				// Every "connection" is the same in-process store; closing
				// one must not close the store the others use.
				NewConn: func(t *testing.T) state.Coordinator { return conn{s} },
			}
		})
	})
}

// conn is a handle on a shared Store whose Close does nothing.
type conn struct{ *memstate.Store }

func (conn) Close() error { return nil }

func TestSweepDropsExpiredEntries(t *testing.T) {
	ctx := t.Context()
	clock := clockwork.NewFakeClock()
	s := memstate.New(clock)
	const n = 3000
	for i := range n {
		if _, err := s.MarkSeen(ctx, fmt.Sprintf("k%d", i), time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Acquire(ctx, fmt.Sprintf("l%d", i), "o", time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if seen, leases := s.Len(); seen != n || leases != n {
		t.Fatalf("Len = %d, %d; want %d, %d", seen, leases, n, n)
	}
	clock.Advance(2 * time.Second)
	// Keep writing fresh keys; the expired ones must be swept, not pile up.
	for i := range n {
		if _, err := s.MarkSeen(ctx, fmt.Sprintf("new%d", i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	seen, leases := s.Len()
	if leases != 0 || seen > n+1024 {
		t.Fatalf("after expiry and %d writes: Len = %d seen, %d leases; want expired entries swept", n, seen, leases)
	}
}

func TestClosed(t *testing.T) {
	s := memstate.New(nil)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping on open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping after Close: err = nil")
	}
	if _, err := s.MarkSeen(ctx, "k", time.Second); err == nil {
		t.Fatal("MarkSeen after Close: err = nil")
	}
	if _, err := s.Acquire(ctx, "k", "o", time.Second); err == nil {
		t.Fatal("Acquire after Close: err = nil")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

var _ state.Coordinator = conn{}
