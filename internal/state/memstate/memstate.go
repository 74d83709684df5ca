package memstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

var _ state.Coordinator = (*Store)(nil)

// errClosed is returned by every method after Close.
var errClosed = errors.New("memstate: store closed")

// sweepEvery is how many writes pass between full sweeps of expired entries.
const sweepEvery = 1024

// Store is an in-process state.Coordinator. The zero value is not usable; use New.
type Store struct {
	clock clockwork.Clock

	mu     sync.Mutex
	closed bool
	seen   map[string]time.Time // dedupe key -> expiry
	leases map[string]holder    // lease key -> current holder
	fence  int64                // last token handed out; one counter for all keys keeps tokens per key strictly increasing without per-key state
	writes int                  // writes since the last sweep
}

type holder struct {
	owner   string
	token   int64
	expires time.Time
}

// New returns an empty Store reading time from clock (the real clock if nil).
func New(clock clockwork.Clock) *Store {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	return &Store{
		clock:  clock,
		seen:   make(map[string]time.Time),
		leases: make(map[string]holder),
	}
}

// begin checks ctx and the closed flag and locks the store. On success the
// caller must unlock s.mu.
func (s *Store) begin(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstate: %s %q: %w", op, key, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("memstate: %s %q: %w", op, key, errClosed)
	}
	return nil
}

func checkTTL(op, key string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memstate: %s %q: ttl must be positive, got %v", op, key, ttl)
	}
	return nil
}

// wrote counts a write and occasionally drops all expired entries, so keys
// that are never touched again do not accumulate. Called with s.mu held.
func (s *Store) wrote(now time.Time) {
	s.writes++
	if s.writes < sweepEvery {
		return
	}
	s.writes = 0
	for k, exp := range s.seen {
		if !now.Before(exp) {
			delete(s.seen, k)
		}
	}
	for k, h := range s.leases {
		if !now.Before(h.expires) {
			delete(s.leases, k)
		}
	}
}

// MarkSeen implements state.Deduper.
func (s *Store) MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := checkTTL("mark seen", key, ttl); err != nil {
		return false, err
	}
	if err := s.begin(ctx, "mark seen", key); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	now := s.clock.Now()
	if exp, ok := s.seen[key]; ok && now.Before(exp) {
		return false, nil
	}
	s.seen[key] = now.Add(ttl)
	s.wrote(now)
	return true, nil
}

// Seen implements state.Deduper.
func (s *Store) Seen(ctx context.Context, key string) (bool, error) {
	if err := s.begin(ctx, "seen", key); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	now := s.clock.Now()
	exp, ok := s.seen[key]
	if ok && !now.Before(exp) {
		delete(s.seen, key)
		ok = false
	}
	return ok, nil
}

// Forget implements state.Deduper.
func (s *Store) Forget(ctx context.Context, key string) error {
	if err := s.begin(ctx, "forget", key); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.seen, key)
	return nil
}

// current returns the unexpired holder of key. Called with s.mu held.
func (s *Store) current(key string, now time.Time) (holder, bool) {
	h, ok := s.leases[key]
	if !ok {
		return holder{}, false
	}
	if !now.Before(h.expires) {
		delete(s.leases, key)
		return holder{}, false
	}
	return h, true
}

// Acquire implements state.Leaser. A lease is not re-entrant: while any
// owner, including the caller, holds key, Acquire returns state.ErrLeaseHeld.
func (s *Store) Acquire(ctx context.Context, key, owner string, ttl time.Duration) (state.Lease, error) {
	if err := checkTTL("acquire", key, ttl); err != nil {
		return state.Lease{}, err
	}
	if err := s.begin(ctx, "acquire", key); err != nil {
		return state.Lease{}, err
	}
	defer s.mu.Unlock()
	now := s.clock.Now()
	if _, ok := s.current(key, now); ok {
		return state.Lease{}, fmt.Errorf("memstate: acquire %q: %w", key, state.ErrLeaseHeld)
	}
	s.fence++
	h := holder{owner: owner, token: s.fence, expires: now.Add(ttl)}
	s.leases[key] = h
	s.wrote(now)
	return state.Lease{Key: key, Owner: owner, Token: h.token, Expires: h.expires}, nil
}

// Renew implements state.Leaser.
func (s *Store) Renew(ctx context.Context, l state.Lease, ttl time.Duration) (state.Lease, error) {
	if err := checkTTL("renew", l.Key, ttl); err != nil {
		return state.Lease{}, err
	}
	if err := s.begin(ctx, "renew", l.Key); err != nil {
		return state.Lease{}, err
	}
	defer s.mu.Unlock()
	now := s.clock.Now()
	h, ok := s.current(l.Key, now)
	if !ok || h.owner != l.Owner || h.token != l.Token {
		return state.Lease{}, fmt.Errorf("memstate: renew %q: %w", l.Key, state.ErrLeaseLost)
	}
	h.expires = now.Add(ttl)
	s.leases[l.Key] = h
	l.Expires = h.expires
	return l, nil
}

// Release implements state.Leaser.
func (s *Store) Release(ctx context.Context, l state.Lease) error {
	if err := s.begin(ctx, "release", l.Key); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if h, ok := s.current(l.Key, s.clock.Now()); ok && h.owner == l.Owner && h.token == l.Token {
		delete(s.leases, l.Key)
	}
	return nil
}

// Check implements state.Leaser.
func (s *Store) Check(ctx context.Context, l state.Lease) error {
	if err := s.begin(ctx, "check", l.Key); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if h, ok := s.current(l.Key, s.clock.Now()); ok && h.owner == l.Owner && h.token == l.Token {
		return nil
	}
	return fmt.Errorf("memstate: check %q: %w", l.Key, state.ErrLeaseLost)
}

// Ping reports whether the store is open.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx, "ping", ""); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Close drops all state; later calls fail. Closing twice is not an error.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.seen = nil
	s.leases = nil
	return nil
}

// Len reports how many dedupe records and leases are stored, expired or not.
// It exists so tests can observe that expired entries are swept.
func (s *Store) Len() (seen, leases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen), len(s.leases)
}
