package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// Sentinel errors. Backends wrap them; compare with errors.Is.
var (
	ErrNotFound  = errors.New("state: not found")
	ErrLeaseHeld = errors.New("state: lease held by another owner")
	ErrLeaseLost = errors.New("state: lease lost")
)

// Deduper remembers keys for a while. Keys are opaque strings such as "evt:generic:msg_123".
//
// A Deduper is an optimisation, not a source of truth: a backend may lose its
// records (Redis restarted, failover), after which MarkSeen reports first=true
// again. Callers must make the work behind a key idempotent.
type Deduper interface {
	// MarkSeen atomically records key for ttl. first is true only for the one caller that recorded it
	// (across connections, processes and replicas); false while an unexpired record exists.
	MarkSeen(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
	// Seen reports whether an unexpired record for key exists.
	Seen(ctx context.Context, key string) (bool, error)
	// Forget deletes the record (no error when absent).
	Forget(ctx context.Context, key string) error
}

// Lease is a time-limited claim on a key by an owner.
type Lease struct {
	Key     string
	Owner   string
	Token   int64     // fencing token: strictly increasing per key across acquisitions, never reused (survives lease expiry)
	Expires time.Time // local estimate
}

// Leaser hands out per-key leases with fencing tokens.
type Leaser interface {
	// Acquire takes the lease on key for ttl, or returns ErrLeaseHeld if another owner holds it.
	Acquire(ctx context.Context, key, owner string, ttl time.Duration) (Lease, error)
	// Renew extends a held lease; ErrLeaseLost if it expired or someone else holds it now.
	Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// Release gives it up; releasing a lease you no longer hold is not an error but changes nothing.
	Release(ctx context.Context, l Lease) error
	// Check is the cheap "do I still hold it?" called before every Sentry mutation: nil if l (owner AND token) still holds the key, ErrLeaseLost otherwise.
	Check(ctx context.Context, l Lease) error
}

// Coordinator is what a backend provides.
type Coordinator interface {
	Deduper
	Leaser
	Ping(ctx context.Context) error
	Close() error
}

// LockKeyPrefix is prepended to gocron job names to form lease keys.
const LockKeyPrefix = "job:"

// unlockTimeout bounds Unlock/Release calls made on a detached context.
const unlockTimeout = 5 * time.Second

// NewLocker returns a gocron.Locker backed by l. Each job run takes the lease
// "job:<job name>" for ttl as owner; a run whose lock is held elsewhere fails
// with an error wrapping ErrLeaseHeld and gocron skips it. While the job runs
// the lease is renewed every ttl/3, until Unlock or until the context given
// to Lock ends, so ttl only bounds how long a crashed replica blocks the job
// (and how soon another replica takes over), not how long a run may last.
// Unlock releases the lease as soon as the job returns, so a replica whose
// tick fires after that (clock skew larger than the job's run time) runs the
// same tick again: jobs must be idempotent, or use ElectorFor when that is not
// acceptable.
func NewLocker(l Leaser, owner string, ttl time.Duration) gocron.Locker {
	return &locker{leaser: l, owner: owner, ttl: ttl}
}

type locker struct {
	leaser Leaser
	owner  string
	ttl    time.Duration
}

func (k *locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	lease, err := k.leaser.Acquire(ctx, LockKeyPrefix+key, k.owner, k.ttl)
	if err != nil {
		return nil, fmt.Errorf("lock job %q: %w", key, err)
	}
	lk := &lock{leaser: k.leaser, lease: lease, stop: make(chan struct{}), done: make(chan struct{})}
	go lk.renew(ctx, k.ttl)
	return lk, nil
}

type lock struct {
	leaser Leaser
	mu     sync.Mutex
	lease  Lease
	once   sync.Once
	stop   chan struct{}
	done   chan struct{}
}

// renew keeps the lease while the job runs; a lease found lost is left alone
// (another replica may run the job from then on).
func (k *lock) renew(ctx context.Context, ttl time.Duration) {
	defer close(k.done)
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			k.mu.Lock()
			cur := k.lease
			k.mu.Unlock()
			nl, err := k.leaser.Renew(ctx, cur, ttl)
			if errors.Is(err, ErrLeaseLost) {
				return
			}
			if err == nil {
				k.mu.Lock()
				k.lease = nl
				k.mu.Unlock()
			}
		}
	}
}

// Unlock stops the renewals and releases the lease. gocron passes an
// already-cancelled ctx at shutdown, so the release runs on a detached
// context with a short timeout.
func (k *lock) Unlock(ctx context.Context) error {
	k.once.Do(func() { close(k.stop) })
	<-k.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	k.mu.Lock()
	lease := k.lease
	k.mu.Unlock()
	if err := k.leaser.Release(ctx, lease); err != nil {
		return fmt.Errorf("unlock job %q: %w", lease.Key, err)
	}
	return nil
}

// ElectorFor returns a gocron.Elector that keeps a lease on key as owner:
// IsLeader renews the lease it holds (or acquires it when it holds none) and
// returns nil while it is the holder, ErrLeaseHeld otherwise. A leader that
// stops calling IsLeader loses leadership after ttl, so ttl should exceed the
// scheduling interval of the most frequent job.
func ElectorFor(l Leaser, key, owner string, ttl time.Duration) gocron.Elector {
	return &elector{leaser: l, key: key, owner: owner, ttl: ttl}
}

type elector struct {
	leaser Leaser
	key    string
	owner  string
	ttl    time.Duration

	mu    sync.Mutex
	lease *Lease
}

func (e *elector) IsLeader(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lease != nil {
		renewed, err := e.leaser.Renew(ctx, *e.lease, e.ttl)
		if err == nil {
			e.lease = &renewed
			return nil
		}
		if !errors.Is(err, ErrLeaseLost) {
			return fmt.Errorf("elector %q renew: %w", e.key, err)
		}
		e.lease = nil
	}
	lease, err := e.leaser.Acquire(ctx, e.key, e.owner, e.ttl)
	if err != nil {
		return fmt.Errorf("elector %q: %w", e.key, err)
	}
	e.lease = &lease
	return nil
}
