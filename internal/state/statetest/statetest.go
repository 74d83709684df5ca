package statetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Harness is one backend instance prepared for a single subtest.
type Harness struct {
	// Coord is the backend under test.
	Coord state.Coordinator
	// Advance moves the backend's time forward by d: a fake clock is
	// advanced, a real server is waited for.
	Advance func(d time.Duration)
	// NewConn returns a second, independent connection to the same backend
	// and namespace as Coord. It registers its own cleanup.
	NewConn func(t *testing.T) state.Coordinator
	// ChildEnv holds KEY=VALUE pairs that make newHarness, called in a child
	// process, reach the same backend and namespace. Only RunProcessTests
	// uses it.
	ChildEnv []string
}

// Durations used throughout. They are real time for networked backends, so
// every boundary is at least 100ms away from the instant it is checked.
const (
	shortTTL = time.Second // long enough that a loaded CI machine does not overrun half of it
	longTTL  = 30 * time.Second
	racers   = 32
)

// RunTests runs the conformance suite. newHarness is called once per subtest;
// subtests run in parallel and use distinct keys.
func RunTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		run  func(t *testing.T, h Harness, p string)
	}{
		{"MarkSeen/FirstThenDuplicate", testMarkSeenDuplicate},
		{"MarkSeen/Expiry", testMarkSeenExpiry},
		{"MarkSeen/Forget", testForget},
		{"MarkSeen/RaceAcrossConns", testMarkSeenRace},
		{"InvalidTTL", testInvalidTTL},
		{"Lease/AcquireHeldRelease", testAcquireHeldRelease},
		{"Lease/RaceAcrossConns", testAcquireRace},
		{"Lease/ExpiryAfterCrash", testExpiryAfterCrash},
		{"Lease/Fencing", testFencing},
		{"Lease/FencingSameOwner", testFencingSameOwner},
		{"Lease/RenewExtends", testRenewExtends},
		{"Lease/RenewWhileOthersAcquire", testRenewWhileOthersAcquire},
		{"Lease/RenewRaceAfterExpiry", testRenewRaceAfterExpiry},
		{"Lease/KeysIndependent", testKeysIndependent},
		{"ContextCancelled", testContextCancelled},
		{"Locker/OneWinsUntilUnlock", testLocker},
		{"Locker/ExpiresWithoutUnlock", testLockerExpiry},
		{"Elector", testElector},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tc.run(t, h, uniquePrefix(t))
		})
	}
}

// uniquePrefix returns a key prefix no other subtest or run uses.
func uniquePrefix(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "st-" + hex.EncodeToString(b[:]) + ":"
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustMarkSeen(t *testing.T, ctx context.Context, d state.Deduper, key string, ttl time.Duration) bool {
	t.Helper()
	first, err := d.MarkSeen(ctx, key, ttl)
	if err != nil {
		t.Fatalf("MarkSeen(%q): %v", key, err)
	}
	return first
}

func mustSeen(t *testing.T, ctx context.Context, d state.Deduper, key string) bool {
	t.Helper()
	ok, err := d.Seen(ctx, key)
	if err != nil {
		t.Fatalf("Seen(%q): %v", key, err)
	}
	return ok
}

func mustAcquire(t *testing.T, ctx context.Context, l state.Leaser, key, owner string, ttl time.Duration) state.Lease {
	t.Helper()
	lease, err := l.Acquire(ctx, key, owner, ttl)
	if err != nil {
		t.Fatalf("Acquire(%q, %q): %v", key, owner, err)
	}
	if lease.Key != key || lease.Owner != owner || lease.Token <= 0 || lease.Expires.IsZero() {
		t.Fatalf("Acquire(%q, %q) = %+v; want Key, Owner, positive Token and Expires set", key, owner, lease)
	}
	return lease
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v; want %v", what, err, target)
	}
}

func testMarkSeenDuplicate(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	other := h.NewConn(t)
	key := p + "evt:generic:msg_1"
	if mustSeen(t, ctx, h.Coord, key) {
		t.Fatal("Seen before MarkSeen = true")
	}
	if !mustMarkSeen(t, ctx, h.Coord, key, longTTL) {
		t.Fatal("first MarkSeen = false; want true")
	}
	if mustMarkSeen(t, ctx, h.Coord, key, longTTL) {
		t.Fatal("second MarkSeen = true; want false")
	}
	if mustMarkSeen(t, ctx, other, key, longTTL) {
		t.Fatal("MarkSeen from another connection = true; want false")
	}
	if !mustSeen(t, ctx, other, key) {
		t.Fatal("Seen from another connection = false; want true")
	}
	if !mustMarkSeen(t, ctx, h.Coord, p+"evt:generic:msg_2", longTTL) {
		t.Fatal("MarkSeen of a different key = false; want true")
	}
}

func testMarkSeenExpiry(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "evt:ttl"
	if !mustMarkSeen(t, ctx, h.Coord, key, shortTTL) {
		t.Fatal("first MarkSeen = false")
	}
	h.Advance(shortTTL / 2)
	if mustMarkSeen(t, ctx, h.Coord, key, shortTTL) {
		t.Fatal("MarkSeen before expiry = true; want false")
	}
	if !mustSeen(t, ctx, h.Coord, key) {
		t.Fatal("Seen before expiry = false")
	}
	// The duplicate must not have extended the record: at 5/4 ttl it is gone
	// (an extended one would live until 3/2 ttl).
	h.Advance(shortTTL * 3 / 4)
	if mustSeen(t, ctx, h.Coord, key) {
		t.Fatal("Seen after expiry = true; want false (did a duplicate MarkSeen extend the TTL?)")
	}
	if !mustMarkSeen(t, ctx, h.Coord, key, shortTTL) {
		t.Fatal("MarkSeen after expiry = false; want true")
	}
}

func testForget(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "evt:forget"
	if err := h.Coord.Forget(ctx, p+"never-seen"); err != nil {
		t.Fatalf("Forget of absent key: %v", err)
	}
	mustMarkSeen(t, ctx, h.Coord, key, longTTL)
	if err := h.NewConn(t).Forget(ctx, key); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if mustSeen(t, ctx, h.Coord, key) {
		t.Fatal("Seen after Forget = true")
	}
	if !mustMarkSeen(t, ctx, h.Coord, key, longTTL) {
		t.Fatal("MarkSeen after Forget = false; want true")
	}
}

// conns opens n independent connections.
func conns(t *testing.T, h Harness, n int) []state.Coordinator {
	cs := make([]state.Coordinator, n)
	for i := range cs {
		cs[i] = h.NewConn(t)
	}
	return cs
}

// race runs f(i) for i in [0,n) in goroutines released together.
func race(n int, f func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			f(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

func testMarkSeenRace(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	cs := conns(t, h, racers)
	for round := range 3 {
		key := fmt.Sprintf("%sevt:race:%d", p, round)
		var wins, errs atomic.Int32
		race(racers, func(i int) {
			first, err := cs[i].MarkSeen(ctx, key, longTTL)
			if err != nil {
				errs.Add(1)
				t.Errorf("racer %d: MarkSeen: %v", i, err)
			}
			if first {
				wins.Add(1)
			}
		})
		if wins.Load() != 1 || errs.Load() != 0 {
			t.Fatalf("round %d: %d of %d racers won MarkSeen (%d errors); want exactly 1", round, wins.Load(), racers, errs.Load())
		}
	}
}

func testInvalidTTL(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	if _, err := h.Coord.MarkSeen(ctx, p+"k", 0); err == nil {
		t.Error("MarkSeen with ttl 0: err = nil; want an error")
	}
	if _, err := h.Coord.Acquire(ctx, p+"k", "a", -time.Second); err == nil {
		t.Error("Acquire with negative ttl: err = nil; want an error")
	}
	// Nothing was recorded by the rejected calls.
	if mustSeen(t, ctx, h.Coord, p+"k") {
		t.Error("rejected MarkSeen left a record")
	}
	mustAcquire(t, ctx, h.Coord, p+"k", "b", longTTL)
}

func testAcquireHeldRelease(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "person:42"
	other := h.NewConn(t)
	a := mustAcquire(t, ctx, h.Coord, key, "worker-a", longTTL)
	if err := h.Coord.Check(ctx, a); err != nil {
		t.Fatalf("Check of held lease: %v", err)
	}
	if err := other.Check(ctx, a); err != nil {
		t.Fatalf("Check of held lease from another connection: %v", err)
	}
	_, err := other.Acquire(ctx, key, "worker-b", longTTL)
	wantErr(t, "Acquire by another owner", err, state.ErrLeaseHeld)
	_, err = h.Coord.Acquire(ctx, key, "worker-a", longTTL)
	wantErr(t, "Acquire by the same owner (leases are not re-entrant)", err, state.ErrLeaseHeld)
	if err := h.Coord.Check(ctx, a); err != nil {
		t.Fatalf("Check after failed acquisitions: %v", err)
	}

	if err := h.Coord.Release(ctx, a); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantErr(t, "Check after Release", h.Coord.Check(ctx, a), state.ErrLeaseLost)
	if err := h.Coord.Release(ctx, a); err != nil {
		t.Fatalf("second Release: %v; want nil", err)
	}
	b := mustAcquire(t, ctx, other, key, "worker-b", longTTL)
	if b.Token <= a.Token {
		t.Fatalf("token after release = %d; want > %d", b.Token, a.Token)
	}
	if err := h.Coord.Release(ctx, state.Lease{Key: p + "never-held", Owner: "x", Token: 1}); err != nil {
		t.Fatalf("Release of a never-held key: %v; want nil", err)
	}
}

func testAcquireRace(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	cs := conns(t, h, racers)
	key := p + "person:race"
	var last int64
	for round := range 3 {
		var (
			mu     sync.Mutex
			winner []state.Lease
		)
		race(racers, func(i int) {
			l, err := cs[i].Acquire(ctx, key, fmt.Sprintf("owner-%d", i), longTTL)
			switch {
			case err == nil:
				mu.Lock()
				winner = append(winner, l)
				mu.Unlock()
			case !errors.Is(err, state.ErrLeaseHeld):
				t.Errorf("racer %d: Acquire: %v; want nil or ErrLeaseHeld", i, err)
			}
		})
		if len(winner) != 1 {
			t.Fatalf("round %d: %d of %d racers acquired the lease; want exactly 1", round, len(winner), racers)
		}
		w := winner[0]
		if w.Token <= last {
			t.Fatalf("round %d: token %d; want > previous %d", round, w.Token, last)
		}
		last = w.Token
		if err := h.Coord.Check(ctx, w); err != nil {
			t.Fatalf("round %d: Check of winner: %v", round, err)
		}
		if err := h.Coord.Release(ctx, w); err != nil {
			t.Fatalf("round %d: Release: %v", round, err)
		}
	}
}

func testExpiryAfterCrash(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "person:crash"
	crashed := h.NewConn(t)
	a := mustAcquire(t, ctx, crashed, key, "crashed", shortTTL)
	// The holder goes away without releasing.
	if err := crashed.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := h.Coord.Acquire(ctx, key, "survivor", shortTTL)
	wantErr(t, "Acquire before the crashed holder's TTL", err, state.ErrLeaseHeld)

	h.Advance(shortTTL + shortTTL/3)
	b := mustAcquire(t, ctx, h.Coord, key, "survivor", longTTL)
	if b.Token <= a.Token {
		t.Fatalf("token after expiry = %d; want > %d (tokens must survive lease expiry)", b.Token, a.Token)
	}
	wantErr(t, "Check of the expired lease", h.Coord.Check(ctx, a), state.ErrLeaseLost)
}

func testFencing(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "person:fence"
	other := h.NewConn(t)
	old := mustAcquire(t, ctx, h.Coord, key, "slow", shortTTL)
	h.Advance(shortTTL + shortTTL/3) // "slow" stalls past its TTL
	cur := mustAcquire(t, ctx, other, key, "fast", longTTL)
	if cur.Token <= old.Token {
		t.Fatalf("takeover token %d; want > %d", cur.Token, old.Token)
	}

	wantErr(t, "Check of old lease", h.Coord.Check(ctx, old), state.ErrLeaseLost)
	_, err := h.Coord.Renew(ctx, old, longTTL)
	wantErr(t, "Renew of old lease", err, state.ErrLeaseLost)
	if err := h.Coord.Release(ctx, old); err != nil {
		t.Fatalf("Release of old lease: %v; want nil", err)
	}
	if err := other.Check(ctx, cur); err != nil {
		t.Fatalf("new holder's Check after old holder's Release: %v", err)
	}
	_, err = h.Coord.Acquire(ctx, key, "third", longTTL)
	wantErr(t, "Acquire after old holder's Release", err, state.ErrLeaseHeld)

	// Check compares owner AND token.
	forged := cur
	forged.Owner = old.Owner
	wantErr(t, "Check with current token but wrong owner", h.Coord.Check(ctx, forged), state.ErrLeaseLost)
	forged = cur
	forged.Token = old.Token
	wantErr(t, "Check with current owner but old token", h.Coord.Check(ctx, forged), state.ErrLeaseLost)
	forged.Token = cur.Token + 1
	wantErr(t, "Check with current owner but future token", h.Coord.Check(ctx, forged), state.ErrLeaseLost)
	if _, err := h.Coord.Renew(ctx, forged, longTTL); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("Renew with forged token: err = %v; want ErrLeaseLost", err)
	}
	if err := other.Check(ctx, cur); err != nil {
		t.Fatalf("Check of current lease at the end: %v", err)
	}
}

func testFencingSameOwner(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "person:same"
	old := mustAcquire(t, ctx, h.Coord, key, "worker-1", shortTTL)
	h.Advance(shortTTL + shortTTL/3)
	cur := mustAcquire(t, ctx, h.Coord, key, "worker-1", longTTL)
	if cur.Token <= old.Token {
		t.Fatalf("re-acquired token %d; want > %d", cur.Token, old.Token)
	}
	wantErr(t, "Check of the same owner's old lease", h.Coord.Check(ctx, old), state.ErrLeaseLost)
	_, err := h.Coord.Renew(ctx, old, longTTL)
	wantErr(t, "Renew of the same owner's old lease", err, state.ErrLeaseLost)
	if err := h.Coord.Release(ctx, old); err != nil {
		t.Fatalf("Release of old lease: %v", err)
	}
	if err := h.Coord.Check(ctx, cur); err != nil {
		t.Fatalf("current lease after releasing the old one: %v", err)
	}
}

func testRenewExtends(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "person:renew"
	ttl := 3 * shortTTL / 2 // 450ms
	step := ttl * 2 / 3     // 300ms
	a := mustAcquire(t, ctx, h.Coord, key, "a", ttl)
	h.Advance(step)
	r, err := h.Coord.Renew(ctx, a, ttl)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if r.Token != a.Token || r.Owner != a.Owner || r.Key != a.Key || !r.Expires.After(a.Expires) {
		t.Fatalf("Renew = %+v; want same key/owner/token as %+v and later Expires", r, a)
	}
	h.Advance(step) // past the original expiry, within the renewed one
	if err := h.Coord.Check(ctx, a); err != nil {
		t.Fatalf("Check after renewal, past original expiry: %v", err)
	}
	_, err = h.Coord.Acquire(ctx, key, "b", ttl)
	wantErr(t, "Acquire of a renewed lease", err, state.ErrLeaseHeld)
	h.Advance(ttl)
	wantErr(t, "Check after renewed lease expired", h.Coord.Check(ctx, r), state.ErrLeaseLost)
	_, err = h.Coord.Renew(ctx, r, ttl)
	wantErr(t, "Renew after expiry", err, state.ErrLeaseLost)
}

func testRenewWhileOthersAcquire(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "person:busy"
	cs := conns(t, h, racers)
	a := mustAcquire(t, ctx, h.Coord, key, "holder", longTTL)
	var renewErrs, acquired atomic.Int32
	race(racers, func(i int) {
		if i%2 == 0 {
			if _, err := cs[i].Renew(ctx, a, longTTL); err != nil {
				renewErrs.Add(1)
				t.Errorf("racer %d: Renew: %v", i, err)
			}
			return
		}
		_, err := cs[i].Acquire(ctx, key, fmt.Sprintf("intruder-%d", i), longTTL)
		if err == nil {
			acquired.Add(1)
		} else if !errors.Is(err, state.ErrLeaseHeld) {
			t.Errorf("racer %d: Acquire: %v", i, err)
		}
	})
	if renewErrs.Load() != 0 || acquired.Load() != 0 {
		t.Fatalf("%d renewals failed and %d intruders acquired; want 0 and 0", renewErrs.Load(), acquired.Load())
	}
	if err := h.Coord.Check(ctx, a); err != nil {
		t.Fatalf("Check after concurrent renewals: %v", err)
	}
}

func testRenewRaceAfterExpiry(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	key := p + "person:stale"
	cs := conns(t, h, racers)
	a := mustAcquire(t, ctx, h.Coord, key, "stale", shortTTL)
	h.Advance(shortTTL + shortTTL/3)
	var (
		renewed atomic.Int32
		mu      sync.Mutex
		winners []state.Lease
	)
	race(racers, func(i int) {
		if i%2 == 0 {
			_, err := cs[i].Renew(ctx, a, longTTL)
			if err == nil {
				renewed.Add(1)
			} else if !errors.Is(err, state.ErrLeaseLost) {
				t.Errorf("racer %d: Renew: %v", i, err)
			}
			return
		}
		l, err := cs[i].Acquire(ctx, key, fmt.Sprintf("new-%d", i), longTTL)
		if err == nil {
			mu.Lock()
			winners = append(winners, l)
			mu.Unlock()
		} else if !errors.Is(err, state.ErrLeaseHeld) {
			t.Errorf("racer %d: Acquire: %v", i, err)
		}
	})
	if renewed.Load() != 0 {
		t.Fatalf("%d renewals of an expired lease succeeded; want 0", renewed.Load())
	}
	if len(winners) != 1 {
		t.Fatalf("%d acquirers won after expiry; want exactly 1", len(winners))
	}
	if winners[0].Token <= a.Token {
		t.Fatalf("new token %d; want > %d", winners[0].Token, a.Token)
	}
	wantErr(t, "Check of the expired lease", h.Coord.Check(ctx, a), state.ErrLeaseLost)
}

func testKeysIndependent(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	a := mustAcquire(t, ctx, h.Coord, p+"person:1", "w", longTTL)
	b := mustAcquire(t, ctx, h.Coord, p+"person:2", "w", longTTL)
	if err := h.Coord.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := h.Coord.Check(ctx, b); err != nil {
		t.Fatalf("releasing person:1 affected person:2: %v", err)
	}
	// A dedupe key and a lease key with the same name do not interfere.
	if !mustMarkSeen(t, ctx, h.Coord, p+"person:2", longTTL) {
		t.Fatal("MarkSeen of a name used by a lease = false")
	}
	if err := h.Coord.Forget(ctx, p+"person:2"); err != nil {
		t.Fatal(err)
	}
	if err := h.Coord.Check(ctx, b); err != nil {
		t.Fatalf("Forget of a dedupe key affected a lease of the same name: %v", err)
	}
}

func testContextCancelled(t *testing.T, h Harness, p string) {
	live := ctxFor(t)
	held := mustAcquire(t, live, h.Coord, p+"held", "owner", longTTL)

	for _, tc := range []struct {
		name   string
		ctx    func() context.Context
		target error
	}{
		{"Canceled", func() context.Context {
			ctx, cancel := context.WithCancel(live)
			cancel()
			return ctx
		}, context.Canceled},
		{"DeadlineExceeded", func() context.Context {
			ctx, cancel := context.WithDeadline(live, time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return ctx
		}, context.DeadlineExceeded},
	} {
		ctx := tc.ctx()
		k := p + tc.name
		calls := map[string]func() error{
			"MarkSeen": func() error { _, err := h.Coord.MarkSeen(ctx, k, longTTL); return err },
			"Seen":     func() error { _, err := h.Coord.Seen(ctx, k); return err },
			"Forget":   func() error { return h.Coord.Forget(ctx, k) },
			"Acquire":  func() error { _, err := h.Coord.Acquire(ctx, k, "owner", longTTL); return err },
			"Renew":    func() error { _, err := h.Coord.Renew(ctx, held, longTTL); return err },
			"Release":  func() error { return h.Coord.Release(ctx, held) },
			"Check":    func() error { return h.Coord.Check(ctx, held) },
			"Ping":     func() error { return h.Coord.Ping(ctx) },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, tc.target) {
				t.Errorf("%s with %s context: err = %v; want errors.Is(err, %v)", name, tc.name, err, tc.target)
			}
		}
		// The cancelled calls changed nothing.
		if mustSeen(t, live, h.Coord, k) {
			t.Errorf("%s: cancelled MarkSeen left a record", tc.name)
		}
		if err := h.Coord.Check(live, held); err != nil {
			t.Errorf("%s: cancelled Release released the lease: %v", tc.name, err)
		}
		mustAcquire(t, live, h.Coord, k, "owner", longTTL) // cancelled Acquire took nothing
	}
}

func testLocker(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	other := h.NewConn(t)
	la := state.NewLocker(h.Coord, "replica-a", longTTL)
	lb := state.NewLocker(other, "replica-b", longTTL)
	job := p + "reconcile"

	lockA, err := la.Lock(ctx, job)
	if err != nil {
		t.Fatalf("first Lock: %v", err)
	}
	for i := range 2 {
		if _, err := lb.Lock(ctx, job); !errors.Is(err, state.ErrLeaseHeld) {
			t.Fatalf("competing Lock #%d: err = %v; want ErrLeaseHeld", i, err)
		}
	}
	// The lock is the lease "job:<name>".
	_, err = h.Coord.Acquire(ctx, state.LockKeyPrefix+job, "outsider", longTTL)
	wantErr(t, "Acquire of the job lease while locked", err, state.ErrLeaseHeld)
	// Another job name is independent.
	lockOther, err := lb.Lock(ctx, job+"-other")
	if err != nil {
		t.Fatalf("Lock of another job: %v", err)
	}

	// gocron passes an already-cancelled context to Unlock at shutdown.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := lockA.Unlock(cancelled); err != nil {
		t.Fatalf("Unlock with cancelled ctx: %v", err)
	}
	lockB, err := lb.Lock(ctx, job)
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if _, err := la.Lock(ctx, job); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("Lock by a after b took over: err = %v; want ErrLeaseHeld", err)
	}
	// A stale Unlock (a second time) must not release b's lock.
	if err := lockA.Unlock(ctx); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	if _, err := la.Lock(ctx, job); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("Lock after a stale Unlock: err = %v; want ErrLeaseHeld", err)
	}
	for _, l := range []interface{ Unlock(context.Context) error }{lockB, lockOther} {
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := la.Lock(ctx, job); err != nil {
		t.Fatalf("Lock after all unlocked: %v", err)
	}
}

func testLockerExpiry(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	la := state.NewLocker(h.NewConn(t), "replica-a", shortTTL)
	lb := state.NewLocker(h.NewConn(t), "replica-b", shortTTL)
	job := p + "sweep"
	// Never unlocked: replica-a dies mid-job, which stops its renewals (the
	// job's context ends with the process).
	dying, die := context.WithCancel(ctx)
	if _, err := la.Lock(dying, job); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	die()
	if _, err := lb.Lock(ctx, job); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("Lock before TTL: err = %v; want ErrLeaseHeld", err)
	}
	h.Advance(shortTTL + shortTTL/3)
	if _, err := lb.Lock(ctx, job); err != nil {
		t.Fatalf("Lock after the dead holder's TTL: %v", err)
	}
}

func testElector(t *testing.T, h Harness, p string) {
	ctx := ctxFor(t)
	ttl := 3 * shortTTL / 2 // 450ms
	step := ttl * 2 / 3     // 300ms
	key := p + "leader"
	ea := state.ElectorFor(h.NewConn(t), key, "replica-a", ttl)
	eb := state.ElectorFor(h.NewConn(t), key, "replica-b", ttl)
	if err := ea.IsLeader(ctx); err != nil {
		t.Fatalf("first IsLeader: %v", err)
	}
	wantErr(t, "second candidate", eb.IsLeader(ctx), state.ErrLeaseHeld)
	h.Advance(step)
	if err := ea.IsLeader(ctx); err != nil { // renews
		t.Fatalf("leader's IsLeader before TTL: %v", err)
	}
	h.Advance(step) // past the first term, within the renewed one
	wantErr(t, "second candidate after leader renewed", eb.IsLeader(ctx), state.ErrLeaseHeld)
	h.Advance(ttl) // leader stops asking and its term runs out
	if err := eb.IsLeader(ctx); err != nil {
		t.Fatalf("second candidate after leader's term ran out: %v", err)
	}
	wantErr(t, "old leader after losing", ea.IsLeader(ctx), state.ErrLeaseHeld)
	if err := eb.IsLeader(ctx); err != nil {
		t.Fatalf("new leader again: %v", err)
	}
}
