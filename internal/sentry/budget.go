package sentry

import (
	"container/heap"
	"context"
	"strconv"
	"sync"
	"time"
)

// Priority orders requests that wait for the same rate budget: higher first.
type Priority int

// Priorities, lowest first. Leaver traffic (removals and the reads they need)
// goes ahead of joiner/mover traffic, which goes ahead of reconciliation.
const (
	PriorityReconcile Priority = 0
	PriorityJoiner    Priority = 1
	PriorityLeaver    Priority = 2
)

// DefaultPriority is used for calls whose context carries no priority.
const DefaultPriority = PriorityJoiner

func (p Priority) String() string {
	switch p {
	case PriorityReconcile:
		return "reconcile"
	case PriorityJoiner:
		return "joiner"
	case PriorityLeaver:
		return "leaver"
	}
	return "priority(" + strconv.Itoa(int(p)) + ")"
}

type priorityKey struct{}

// WithPriority returns a context whose Sentry calls wait for the rate budget with
// priority p.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// PriorityFrom returns the priority set by WithPriority, or DefaultPriority.
func PriorityFrom(ctx context.Context) Priority {
	if p, ok := ctx.Value(priorityKey{}).(Priority); ok {
		return p
	}
	return DefaultPriority
}

// Limits is what one Sentry response said about its rate-limit window.
type Limits struct {
	// Present is false when the response carried no X-Sentry-Rate-Limit-* headers
	// (self-hosted Sentry disables the limiter).
	Present bool
	// Limit is requests per window (X-Sentry-Rate-Limit-Limit), Remaining what is
	// left in it (X-Sentry-Rate-Limit-Remaining), Reset when it ends
	// (X-Sentry-Rate-Limit-Reset, epoch seconds).
	Limit     int
	Remaining int
	Reset     time.Time
	// ConcurrentLimit is X-Sentry-Rate-Limit-ConcurrentLimit (0 = not sent).
	ConcurrentLimit int
	// Exceeded is set when the response was a rate-limit 429: nothing more may be
	// sent on the key until Reset.
	Exceeded bool
}

// Budget paces requests so that Sentry's limits are not exceeded. A key names one
// of Sentry's rate-limit buckets: a hash of the token, the method and the URL
// pattern (never the token itself). Implementations must be safe for concurrent
// use; one Budget may be shared by many clients and, through a shared store such
// as Redis, by many replicas.
//
// Acquire blocks until one request on key may be sent now — within the current
// fixed 1-second window's limit and under the concurrency cap — and returns a
// release function to call once the response has arrived. Waiting requests of a
// higher Priority go first. It returns ctx.Err() if the context ends first; then
// nothing was taken.
//
// Observe feeds back what a response said; it never blocks for long and its errors
// (a shared store being down) are the Budget's to log: pacing degrades to local
// knowledge, it never stops a call.
//
// A store-backed implementation (e.g. Redis) can count each window with
// INCR+EXPIRE on "<key>:<unix second>", keep Sentry's reported limit, reset and
// concurrency limit in a hash, hold concurrency slots as a sorted set of leases,
// and approximate priorities by letting lower priorities use only part of a window
// while higher ones wait.
type Budget interface {
	Acquire(ctx context.Context, key string, p Priority) (release func(), err error)
	Observe(key string, l Limits)
}

// LocalBudgetOptions configures NewLocalBudget. Zero values are usable.
type LocalBudgetOptions struct {
	// DefaultLimit is the per-window limit assumed before Sentry reported one
	// (default 40, Sentry's documented default). Negative: unlimited.
	DefaultLimit int
	// DefaultConcurrency caps requests in flight per key before Sentry sent
	// X-Sentry-Rate-Limit-ConcurrentLimit (default 25). Negative: no cap.
	DefaultConcurrency int
	// Guard: a request sent this close to the end of a window also counts against
	// the next one, because the server may count it there (default 50ms).
	Guard time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// LocalBudget is the in-process Budget: fixed 1-second windows aligned to the
// epoch second like Sentry's, limits learned from response headers, strict
// priority among waiters.
type LocalBudget struct {
	opts    LocalBudgetOptions
	mu      sync.Mutex
	buckets map[string]*bucket
}

var _ Budget = (*LocalBudget)(nil)

// NewLocalBudget returns an in-process Budget.
func NewLocalBudget(opts LocalBudgetOptions) *LocalBudget {
	if opts.DefaultLimit == 0 {
		opts.DefaultLimit = 40
	}
	if opts.DefaultConcurrency == 0 {
		opts.DefaultConcurrency = 25
	}
	if opts.Guard == 0 {
		opts.Guard = 50 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &LocalBudget{opts: opts, buckets: make(map[string]*bucket)}
}

type bucket struct {
	limit    int // per window; <0 unlimited
	conc     int // concurrency cap; <0 none
	window   int64
	used     int // counted in window
	carry    int // counted into window+1 (sent in the guard interval)
	blocked  time.Time
	inFlight int
	queue    waitQueue
	seq      uint64
	changed  chan struct{}
}

type waiter struct {
	p     Priority
	seq   uint64
	index int
}

type waitQueue []*waiter

func (q waitQueue) Len() int { return len(q) }
func (q waitQueue) Less(i, j int) bool {
	if q[i].p != q[j].p {
		return q[i].p > q[j].p
	}
	return q[i].seq < q[j].seq
}
func (q waitQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}
func (q *waitQueue) Push(x any) {
	w := x.(*waiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *waitQueue) Pop() any {
	old := *q
	n := len(old)
	w := old[n-1]
	old[n-1] = nil
	*q = old[:n-1]
	w.index = -1
	return w
}

func (b *LocalBudget) bucket(key string) *bucket {
	bk := b.buckets[key]
	if bk == nil {
		bk = &bucket{limit: b.opts.DefaultLimit, conc: b.opts.DefaultConcurrency, changed: make(chan struct{})}
		b.buckets[key] = bk
	}
	return bk
}

func (bk *bucket) broadcast() {
	close(bk.changed)
	bk.changed = make(chan struct{})
}

func (bk *bucket) roll(now time.Time) {
	w := now.Unix()
	switch {
	case w == bk.window:
	case w == bk.window+1:
		bk.window, bk.used, bk.carry = w, bk.carry, 0
	case w > bk.window:
		bk.window, bk.used, bk.carry = w, 0, 0
	}
}

// wait returns 0 when a request may go now, d>0 to wait for a time, or -1 to wait
// for a release.
func (bk *bucket) wait(now time.Time) time.Duration {
	if now.Before(bk.blocked) {
		return bk.blocked.Sub(now)
	}
	if bk.limit >= 0 && bk.used >= bk.limit {
		return time.Unix(bk.window+1, 0).Sub(now) + time.Millisecond
	}
	if bk.conc >= 0 && bk.inFlight >= bk.conc {
		return -1
	}
	return 0
}

// Acquire implements Budget.
func (b *LocalBudget) Acquire(ctx context.Context, key string, p Priority) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	bk := b.bucket(key)
	bk.seq++
	w := &waiter{p: p, seq: bk.seq}
	heap.Push(&bk.queue, w)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := b.opts.Now()
		bk.roll(now)
		var d time.Duration = -1
		if bk.queue[0] == w {
			d = bk.wait(now)
			if d == 0 {
				heap.Pop(&bk.queue)
				bk.used++
				if time.Unix(bk.window+1, 0).Sub(now) < b.opts.Guard {
					bk.carry++
				}
				bk.inFlight++
				bk.broadcast() // the next waiter is now head
				b.mu.Unlock()
				var once sync.Once
				return func() {
					once.Do(func() {
						b.mu.Lock()
						bk.inFlight--
						bk.broadcast()
						b.mu.Unlock()
					})
				}, nil
			}
		}
		ch := bk.changed
		b.mu.Unlock()
		var tc <-chan time.Time
		if d > 0 {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			b.mu.Lock()
			heap.Remove(&bk.queue, w.index)
			bk.broadcast()
			b.mu.Unlock()
			return nil, ctx.Err()
		case <-ch:
		case <-tc:
		}
		if timer != nil {
			timer.Stop() // Go ≥1.23: no stale tick survives Stop
		}
		b.mu.Lock()
	}
}

// Observe implements Budget.
func (b *LocalBudget) Observe(key string, l Limits) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.bucket(key)
	now := b.opts.Now()
	bk.roll(now)
	if !l.Present {
		// No limiter (self-hosted): stop pacing this key, keep the concurrency cap.
		if !l.Exceeded {
			bk.limit = -1
		}
	} else {
		if l.Limit > 0 {
			bk.limit = l.Limit
		}
		if l.ConcurrentLimit > 0 {
			bk.conc = l.ConcurrentLimit
		}
		// The server's count wins when it is higher than ours for the same window.
		if l.Limit > 0 && !l.Reset.IsZero() && l.Reset.Unix() == bk.window+1 {
			if used := l.Limit - l.Remaining; used > bk.used {
				bk.used = used
			}
		}
	}
	if l.Exceeded {
		until := l.Reset
		if !until.After(now) {
			until = time.Unix(now.Unix()+1, 0)
		}
		if until.After(bk.blocked) {
			bk.blocked = until
		}
	}
	bk.broadcast()
}

type preSendKey struct{}

// WithPreSend returns a context whose mutating requests (every method but GET)
// first call check, right before each attempt is sent — after rate-limit waits
// and retry backoff. A non-nil error aborts the call unsent, wrapped.
func WithPreSend(ctx context.Context, check func(context.Context) error) context.Context {
	return context.WithValue(ctx, preSendKey{}, check)
}

func preSendFrom(ctx context.Context) func(context.Context) error {
	f, _ := ctx.Value(preSendKey{}).(func(context.Context) error)
	return f
}

// HasPreSend reports whether ctx carries a pre-send check (WithPreSend): the
// safety gate refuses mutations made outside a held lease.
func HasPreSend(ctx context.Context) bool { return preSendFrom(ctx) != nil }
