package redisstate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// BudgetOptions configures Store.Budget. Zero values are usable.
type BudgetOptions struct {
	// DefaultLimit is the per-window limit assumed before Sentry reported one
	// (default 40). Negative: unlimited.
	DefaultLimit int
	// DefaultConcurrency caps requests in flight per key, fleet-wide, before
	// Sentry sent X-Sentry-Rate-Limit-ConcurrentLimit (default 25). Negative:
	// no cap.
	DefaultConcurrency int
	// Guard: a request granted this close to the end of a window also counts
	// against the next one (default 50ms), since Sentry may count it there.
	Guard time.Duration
	// Shares is the percentage of a window's limit, and of the concurrency
	// cap, that requests of a priority may use (default reconcile 50, joiner
	// 80, leaver 100), so higher priorities always find room.
	Shares map[sentry.Priority]int
	// SlotTTL is how long a concurrency slot lasts if it is never released
	// (the replica crashed); default 60s. It must exceed the longest request.
	SlotTTL time.Duration
	// Timeout bounds every Redis call (default 250ms).
	Timeout time.Duration
	// RetryAfter is how long the budget paces locally after a Redis error
	// before it tries Redis again (default 1s).
	RetryAfter time.Duration
	// Replicas is how many replicas share the budget; while Redis is
	// unreachable each paces at 1/Replicas of the limits (default 1).
	Replicas int
	// LiveReplicas, when set, counts the replicas sharing the budget now (the
	// replica registry) and overrides Replicas, so a fleet that scales keeps
	// its 1/N share while Redis is down.
	LiveReplicas func() int
	// MaxPoll is the longest pause between two attempts of a waiting request
	// (default 200ms); waits for a concurrency slot poll every 5ms.
	MaxPoll time.Duration
	// Now is the clock (default time.Now). Windows are the epoch seconds of
	// this clock, so replicas' clocks must agree well within Guard (NTP).
	Now func() time.Time
	// Logger receives Redis outages and recoveries (default: discard).
	Logger *slog.Logger
}

func (o BudgetOptions) withDefaults() BudgetOptions {
	if o.DefaultLimit == 0 {
		o.DefaultLimit = 40
	}
	if o.DefaultConcurrency == 0 {
		o.DefaultConcurrency = 25
	}
	if o.Guard <= 0 {
		o.Guard = 50 * time.Millisecond
	}
	if o.Shares == nil {
		o.Shares = map[sentry.Priority]int{sentry.PriorityReconcile: 50, sentry.PriorityJoiner: 80, sentry.PriorityLeaver: 100}
	}
	if o.SlotTTL <= 0 {
		o.SlotTTL = time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxPoll <= 0 {
		o.MaxPoll = 200 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// slotPoll is the pause between attempts while waiting for a concurrency slot.
const slotPoll = 5 * time.Millisecond

// stateTTL is how long learned limits are kept without a new observation.
const stateTTL = time.Hour

// Budget is a sentry.Budget shared by every replica through Redis.
//
// Per bucket key K (hashed, so tokens and URL patterns never appear in
// Redis), all keys share the Cluster hash tag {budget:<hash>}:
// "…:w:<epoch second>" counts the grants of one window (INCR+PEXPIRE in the
// same script that refuses beyond the limit); "…:state" is a hash of what
// Sentry said (limit, conc, blocked = epoch ms until which a 429 stops
// everyone); "…:slots" is a sorted set of concurrency slots scored by their
// expiry, so a crashed replica's slots free themselves after SlotTTL.
//
// A grant made within Guard of a window's end also counts against the next
// window; a grant whose reply arrives after its window (and guard) ended is
// discarded and asked for again, so a slow Redis or a paused process cannot
// push a window over its limit. Within a replica, waiters on a key queue by
// priority and only the head asks Redis; across replicas, priorities are approximated by Shares. When
// Redis fails, the Budget logs it and paces with a sentry.LocalBudget at
// 1/Replicas of the limits for RetryAfter; a call never fails or hangs
// because of Redis.
type Budget struct {
	s *Store
	o BudgetOptions
	// local is the fallback while Redis is down, for localN replicas.
	localMu sync.Mutex
	local   *sentry.LocalBudget
	localN  int
	// learned are the limits Sentry reported per key (unscaled), replayed
	// into a fallback rebuilt for another number of replicas.
	learned map[string]sentry.Limits
	owner   string
	slot    atomic.Uint64

	mu        sync.Mutex
	queues    map[string]*budgetQueue
	seq       uint64
	downUntil time.Time
	down      bool
	// observed is what this replica last wrote to Redis per key, so a
	// response that says nothing new within the same second costs no
	// round trip (one per key and second is enough to sync the window).
	observed map[string]observedLimits
}

type observedLimits struct {
	sec               int64
	limit, concurrent int
}

var _ sentry.Budget = (*Budget)(nil)

type budgetWaiter struct {
	p   sentry.Priority
	seq uint64
}

// budgetQueue holds one key's local waiters; the head is the highest
// priority, then the earliest.
type budgetQueue struct {
	waiters []*budgetWaiter
	changed chan struct{}
}

func (q *budgetQueue) head() *budgetWaiter {
	var h *budgetWaiter
	for _, w := range q.waiters {
		if h == nil || w.p > h.p || (w.p == h.p && w.seq < h.seq) {
			h = w
		}
	}
	return h
}

func (q *budgetQueue) broadcast() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Budget returns a fleet-wide rate budget stored under the Store's prefix.
// Budgets of the same prefix share their windows, limits and slots.
func (s *Store) Budget(opts BudgetOptions) *Budget {
	o := opts.withDefaults()
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &Budget{
		s:      s,
		o:      o,
		owner:  hex.EncodeToString(id[:]),
		queues: make(map[string]*budgetQueue),
	}
}

// replicas is how many replicas share the budget now (at least 1).
func (b *Budget) replicas() int {
	if b.o.LiveReplicas != nil {
		return max(1, b.o.LiveReplicas())
	}
	return b.o.Replicas
}

// fallback is the local budget this replica paces with while Redis is down:
// 1/N of the limits for the current number of replicas N (rebuilt when N
// changes; limits Sentry reports are learned again on the next answer).
func (b *Budget) fallback() *sentry.LocalBudget {
	n := b.replicas()
	b.localMu.Lock()
	defer b.localMu.Unlock()
	if b.local == nil || b.localN != n {
		if b.local != nil {
			b.o.Logger.Info("rate budget: the local fallback now paces for a new number of replicas", "replicas", n, "was", b.localN)
		}
		b.local = sentry.NewLocalBudget(sentry.LocalBudgetOptions{
			DefaultLimit:       scaleDown(b.o.DefaultLimit, n),
			DefaultConcurrency: scaleDown(b.o.DefaultConcurrency, n),
			Guard:              b.o.Guard,
			Now:                b.o.Now,
		})
		b.localN = n
		// What Sentry said of each key so far holds for the new share too.
		for k, l := range b.learned {
			b.local.Observe(k, scaleLimits(l, n))
		}
	}
	return b.local
}

// scaleLimits is one replica's part of what Sentry said, of n replicas.
func scaleLimits(l sentry.Limits, n int) sentry.Limits {
	if n > 1 {
		l.Limit = scaleDown(l.Limit, n)
		l.Remaining /= n
		l.ConcurrentLimit = scaleDown(l.ConcurrentLimit, n)
	}
	return l
}

// scaleDown returns n/replicas rounded up (at least 1); negative n stays.
func scaleDown(n, replicas int) int {
	if n <= 0 || replicas <= 1 {
		return n
	}
	return max(1, (n+replicas-1)/replicas)
}

// budgetKeys returns the state, slots and window-key prefix of a bucket key.
func (s *Store) budgetKeys(key string) (stateKey, slotsKey, windowPrefix string) {
	sum := sha256.Sum256([]byte(key))
	tag := s.prefix + "{budget:" + hex.EncodeToString(sum[:8]) + "}"
	return tag + ":state", tag + ":slots", tag + ":w:"
}

func (b *Budget) share(p sentry.Priority) int {
	if v, ok := b.o.Shares[p]; ok {
		return min(max(v, 1), 100)
	}
	if p > sentry.PriorityLeaver {
		return 100
	}
	return b.share(sentry.PriorityReconcile)
}

// usingLocal reports whether Redis is in its back-off after an error.
func (b *Budget) usingLocal() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.down {
		return false
	}
	if b.o.Now().Before(b.downUntil) {
		return true
	}
	return false // retry Redis; markUp or markDown follows
}

func (b *Budget) markDown(op string, err error) {
	b.mu.Lock()
	was := b.down
	b.down, b.downUntil = true, b.o.Now().Add(b.o.RetryAfter)
	b.mu.Unlock()
	if !was {
		b.o.Logger.Warn("rate budget: Redis unavailable; pacing locally", "op", op, "error", err.Error(),
			"retry_after", b.o.RetryAfter.String())
	}
}

func (b *Budget) markUp() {
	b.mu.Lock()
	was := b.down
	b.down = false
	b.mu.Unlock()
	if was {
		b.o.Logger.Info("rate budget: Redis is back; pacing fleet-wide")
	}
}

// budgetAcquireScript grants one request on a key if the window and the
// concurrency cap allow it for the caller's share.
// KEYS: state, slots, this window's counter, next window's counter.
// ARGV: now ms, default limit, default conc, share %, in guard (0/1), slot id, slot ttl ms.
// Returns {1, 0, slotted} when granted, or {0, wait ms} (-1: wait for a slot).
var budgetAcquireScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local st = redis.call('HMGET', KEYS[1], 'limit', 'conc', 'blocked')
local limit = tonumber(st[1] or ARGV[2])
local conc = tonumber(st[2] or ARGV[3])
local blocked = tonumber(st[3] or '0')
if blocked > now then return {0, blocked - now} end
local share = tonumber(ARGV[4])
if limit >= 0 then
  local allowed = math.max(1, math.floor(limit * share / 100))
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used >= allowed then
    return {0, (math.floor(now / 1000) + 1) * 1000 - now + 1}
  end
end
local slotted = 0
if conc >= 0 then
  local ttl = tonumber(ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local allowedc = math.max(1, math.floor(conc * share / 100))
  if redis.call('ZCARD', KEYS[2]) >= allowedc then return {0, -1} end
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
  slotted = 1
end
if limit >= 0 then
  redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], 3000)
  if ARGV[5] == '1' then
    redis.call('INCR', KEYS[4])
    redis.call('PEXPIRE', KEYS[4], 4000)
  end
end
return {1, 0, slotted}
`)

// budgetObserveScript stores what a response said.
// KEYS: state, the counter of the window the response's Reset closes.
// ARGV: present, limit, conc, exceeded, reset ms, now ms, remaining, sync counter (0/1), state ttl ms.
var budgetObserveScript = redis.NewScript(`
if ARGV[1] == '0' then
  if ARGV[4] == '0' then redis.call('HSET', KEYS[1], 'limit', '-1') end
else
  local limit = tonumber(ARGV[2])
  if limit > 0 then redis.call('HSET', KEYS[1], 'limit', ARGV[2]) end
  if tonumber(ARGV[3]) > 0 then redis.call('HSET', KEYS[1], 'conc', ARGV[3]) end
  if limit > 0 and ARGV[8] == '1' then
    local used = limit - tonumber(ARGV[7])
    local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
    if used > cur then redis.call('SET', KEYS[2], string.format('%d', used), 'PX', 3000) end
  end
end
if ARGV[4] == '1' then
  local now = tonumber(ARGV[6])
  local untilms = tonumber(ARGV[5])
  if untilms <= now then untilms = (math.floor(now / 1000) + 1) * 1000 end
  local cur = tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0')
  if untilms > cur then redis.call('HSET', KEYS[1], 'blocked', string.format('%d', untilms)) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[9])
return 1
`)

func b01(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// Acquire implements sentry.Budget.
func (b *Budget) Acquire(ctx context.Context, key string, p sentry.Priority) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.usingLocal() {
		return b.fallback().Acquire(ctx, key, p)
	}
	b.mu.Lock()
	q := b.queues[key]
	if q == nil {
		q = &budgetQueue{changed: make(chan struct{})}
		b.queues[key] = q
	}
	b.seq++
	w := &budgetWaiter{p: p, seq: b.seq}
	q.waiters = append(q.waiters, w)
	q.broadcast() // a new head may have arrived
	b.mu.Unlock()
	left := false
	leave := func() {
		if left {
			return
		}
		left = true
		b.mu.Lock()
		for i, x := range q.waiters {
			if x == w {
				q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
				break
			}
		}
		if len(q.waiters) == 0 {
			delete(b.queues, key)
		}
		q.broadcast()
		b.mu.Unlock()
	}
	defer leave()
	// local hands the request to the local fallback, leaving the queue first
	// so the waiters behind it can follow at once.
	local := func() (func(), error) {
		leave()
		return b.fallback().Acquire(ctx, key, p)
	}

	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		isHead := q.head() == w
		ch := q.changed
		b.mu.Unlock()
		var tc <-chan time.Time
		if isHead {
			if b.usingLocal() {
				return local()
			}
			release, wait, err := b.try(ctx, key, p)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				b.markDown("acquire", err)
				return local()
			}
			b.markUp()
			if release != nil {
				b.mu.Lock()
				still := q.head() == w
				b.mu.Unlock()
				if still {
					return release, nil
				}
				// A higher priority arrived while this attempt was in flight
				// (a slow Redis reply): it goes first. The slot is handed
				// back; the window unit stays spent (conservative by one).
				release()
				continue
			}
			if wait < 0 {
				wait = slotPoll
			}
			wait = min(max(wait, time.Millisecond), b.o.MaxPoll)
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		case <-tc:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// try runs the acquire script once: a release function when granted, else
// how long to wait (-1: for a slot).
func (b *Budget) try(ctx context.Context, key string, p sentry.Priority) (func(), time.Duration, error) {
	stateKey, slotsKey, win := b.s.budgetKeys(key)
	now := b.o.Now()
	sec := now.Unix()
	inGuard := time.Unix(sec+1, 0).Sub(now) < b.o.Guard
	slot := b.owner + ":" + strconv.FormatUint(b.slot.Add(1), 10)
	keys := []string{stateKey, slotsKey, win + strconv.FormatInt(sec, 10), win + strconv.FormatInt(sec+1, 10)}
	cctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	res, err := budgetAcquireScript.Run(cctx, b.s.rdb, keys, now.UnixMilli(), b.o.DefaultLimit, b.o.DefaultConcurrency,
		b.share(p), b01(inGuard), slot, b.o.SlotTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return nil, 0, err
	}
	if len(res) < 2 {
		return nil, 0, errors.New("redisstate: budget: unexpected script reply")
	}
	if res[0] != 1 {
		if res[1] < 0 {
			return nil, -1, nil
		}
		return nil, time.Duration(res[1]) * time.Millisecond, nil
	}
	slotted := len(res) >= 3 && res[2] == 1
	// The grant counted against window sec (and sec+1 in the guard). If the
	// reply came back later than that, sending now could exceed the window
	// it lands in: give the grant up and try again.
	if after := b.o.Now().Unix(); after != sec && !(inGuard && after == sec+1) {
		if slotted {
			b.releaseSlot(ctx, slotsKey, slot)
		}
		return nil, 0, nil
	}
	if !slotted {
		return func() {}, 0, nil
	}
	var once sync.Once
	return func() { once.Do(func() { b.releaseSlot(ctx, slotsKey, slot) }) }, 0, nil
}

// releaseSlot frees a concurrency slot on a detached context: the request is
// over and the slot must go even if ctx ended. On failure the slot expires
// after SlotTTL.
func (b *Budget) releaseSlot(ctx context.Context, slotsKey, slot string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.Timeout)
	defer cancel()
	if err := b.s.rdb.ZRem(rctx, slotsKey, slot).Err(); err != nil {
		b.markDown("release", err)
	}
}

// Observe implements sentry.Budget. The local fallback always learns too,
// scaled to this replica's part.
func (b *Budget) Observe(key string, l sentry.Limits) {
	if l.Limit > 0 || l.ConcurrentLimit > 0 {
		b.localMu.Lock()
		if b.learned == nil {
			b.learned = map[string]sentry.Limits{}
		}
		lr := b.learned[key]
		if l.Limit > 0 {
			lr.Limit = l.Limit
		}
		if l.ConcurrentLimit > 0 {
			lr.ConcurrentLimit = l.ConcurrentLimit
		}
		b.learned[key] = lr
		b.localMu.Unlock()
	}
	b.fallback().Observe(key, scaleLimits(l, b.replicas()))
	if b.usingLocal() {
		return
	}
	now := b.o.Now()
	seen := observedLimits{sec: now.Unix(), limit: l.Limit, concurrent: l.ConcurrentLimit}
	b.mu.Lock()
	if !l.Exceeded && b.observed[key] == seen {
		b.mu.Unlock()
		return
	}
	if b.observed == nil || len(b.observed) > 10000 {
		b.observed = map[string]observedLimits{}
	}
	b.observed[key] = seen
	b.mu.Unlock()
	stateKey, _, win := b.s.budgetKeys(key)
	var resetMS int64
	if !l.Reset.IsZero() {
		resetMS = l.Reset.UnixMilli()
	}
	sync := l.Present && l.Limit > 0 && !l.Reset.IsZero() && l.Reset.Unix() == now.Unix()+1
	// Observe has no context of its own: it must not block for long.
	ctx, cancel := context.WithTimeout(context.Background(), b.o.Timeout)
	defer cancel()
	err := budgetObserveScript.Run(ctx, b.s.rdb, []string{stateKey, win + strconv.FormatInt(now.Unix(), 10)},
		b01(l.Present), l.Limit, l.ConcurrentLimit, b01(l.Exceeded), resetMS, now.UnixMilli(), l.Remaining,
		b01(sync), stateTTL.Milliseconds()).Err()
	if err != nil {
		b.mu.Lock()
		delete(b.observed, key) // not written: the next response tries again
		b.mu.Unlock()
		b.markDown("observe", err)
		return
	}
	b.markUp()
}
