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
// priority and only the head asks Redis, for itself and its peers of the
// same priority in one script call (the spares are handed to the next heads
// while their window lasts); waiters sleep on their own channel until they
// become the head, and a freed slot costs no round trip of its own (it is
// removed with the next attempt on its key, or in a batch within
// releaseDelay). Across replicas, priorities are approximated by Shares. When
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

	mu     sync.Mutex
	queues map[string]*budgetQueue
	// freed are slots released locally and not yet removed from Redis, by
	// slots key; flushScheduled is set while a flush is pending.
	freed          map[string][]string
	flushScheduled bool
	seq            uint64
	downUntil      time.Time
	down           bool
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
	// wake is signalled (never closed) when this waiter may have become the
	// head, or a slot or a spare grant may be free for it.
	wake chan struct{}
}

// budgetQueue holds one key's local waiters; the head is the highest
// priority, then the earliest. spare holds grants Redis gave in a chunk
// beyond the one the head asked for, for the waiters behind it.
type budgetQueue struct {
	waiters []*budgetWaiter
	spare   []spareGrant
}

// spareGrant is one unit of a window (and a concurrency slot when slot is
// set) granted to this replica in a chunk and not handed out yet. It is only
// good in the window it was counted against (sec, and sec+1 when inGuard).
type spareGrant struct {
	p       sentry.Priority
	sec     int64
	inGuard bool
	slot    string
}

func (g spareGrant) validAt(now int64) bool {
	return now == g.sec || (g.inGuard && now == g.sec+1)
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

// wakeHead signals the head, which alone acts on the key.
func (q *budgetQueue) wakeHead() {
	if h := q.head(); h != nil {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// peers counts the waiters of priority p (the head's): how many grants one
// attempt asks Redis for.
func (q *budgetQueue) peers(p sentry.Priority) int {
	n := 0
	for _, w := range q.waiters {
		if w.p == p {
			n++
		}
	}
	return n
}

// maxChunk bounds how many grants one attempt takes for the local waiters.
const maxChunk = 16

// releaseDelay is how long a freed concurrency slot may wait to be removed
// from Redis together with others (or by the next attempt on its key, in the
// same script call): a slot held a little longer is conservative, and a
// release then costs no round trip of its own.
const releaseDelay = 10 * time.Millisecond

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
		freed:  make(map[string][]string),
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

// budgetAcquireScript grants up to n requests on a key if the window and
// the concurrency cap allow them for the caller's share, after removing the
// slots this replica freed since its last call.
// KEYS: state, slots, this window's counter, next window's counter.
// ARGV: now ms, default limit, default conc, share %, in guard (0/1), slot id
// prefix, slot ttl ms, n, then the freed slot ids.
// Returns {1, 0, slotted, granted} when granted (slots <prefix>:1…granted),
// or {0, wait ms} (-1: wait for a slot).
var budgetAcquireScript = redis.NewScript(`
for i = 9, #ARGV do redis.call('ZREM', KEYS[2], ARGV[i]) end
local now = tonumber(ARGV[1])
local st = redis.call('HMGET', KEYS[1], 'limit', 'conc', 'blocked')
local limit = tonumber(st[1] or ARGV[2])
local conc = tonumber(st[2] or ARGV[3])
local blocked = tonumber(st[3] or '0')
if blocked > now then return {0, blocked - now} end
local share = tonumber(ARGV[4])
local n = math.max(1, tonumber(ARGV[8]))
if limit >= 0 then
  local allowed = math.max(1, math.floor(limit * share / 100))
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used >= allowed then
    return {0, (math.floor(now / 1000) + 1) * 1000 - now + 1}
  end
  n = math.min(n, allowed - used)
end
local slotted = 0
if conc >= 0 then
  local ttl = tonumber(ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local allowedc = math.max(1, math.floor(conc * share / 100))
  local free = allowedc - redis.call('ZCARD', KEYS[2])
  if free <= 0 then return {0, -1} end
  n = math.min(n, free)
  for i = 1, n do redis.call('ZADD', KEYS[2], now + ttl, ARGV[6] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
  slotted = 1
end
if limit >= 0 then
  redis.call('INCRBY', KEYS[3], n)
  redis.call('PEXPIRE', KEYS[3], 3000)
  if ARGV[5] == '1' then
    redis.call('INCRBY', KEYS[4], n)
    redis.call('PEXPIRE', KEYS[4], 4000)
  end
end
return {1, 0, slotted, n}
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
//
// Only the head of a key's local queue asks Redis, for as many grants as
// there are waiters of its priority (up to maxChunk); the grants beyond its
// own wait in the queue for the next heads, who take them without a round
// trip while their window lasts. Waiters sleep on their own channel: a
// waiter is woken when it becomes the head, when a local slot frees, or by
// its timer (the next window, or a slot freed by another replica: polled
// every slotPoll).
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
		q = &budgetQueue{}
		b.queues[key] = q
	}
	b.seq++
	w := &budgetWaiter{p: p, seq: b.seq, wake: make(chan struct{}, 1)}
	q.waiters = append(q.waiters, w)
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
			// Nobody left to use the spares: their slots go back; their
			// window units stay spent (conservative).
			_, slotsKey, _ := b.s.budgetKeys(key)
			for _, g := range q.spare {
				b.freeLocked(slotsKey, g.slot)
			}
			q.spare = nil
			if b.queues[key] == q {
				delete(b.queues, key)
			}
		}
		q.wakeHead()
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
		var rel func()
		want := 0
		if isHead {
			rel = b.takeSpareLocked(key, q, w)
			want = min(q.peers(p), maxChunk)
		}
		b.mu.Unlock()
		if rel != nil {
			return rel, nil
		}
		var tc <-chan time.Time
		if isHead {
			if b.usingLocal() {
				return local()
			}
			release, wait, err := b.try(ctx, key, p, q, want)
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
		case <-w.wake:
		case <-tc:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// takeSpareLocked hands w a spare grant of its key still good in this
// window, dropping the spares whose window passed. Call with b.mu held.
func (b *Budget) takeSpareLocked(key string, q *budgetQueue, w *budgetWaiter) func() {
	if len(q.spare) == 0 {
		return nil
	}
	now := b.o.Now().Unix()
	_, slotsKey, _ := b.s.budgetKeys(key)
	for len(q.spare) > 0 {
		g := q.spare[0]
		q.spare = q.spare[1:]
		if !g.validAt(now) {
			b.freeLocked(slotsKey, g.slot)
			continue
		}
		if g.p > w.p {
			// A grant of a higher class's share is not for a lower class:
			// it goes back (the unit stays spent).
			b.freeLocked(slotsKey, g.slot)
			continue
		}
		return b.releaser(key, slotsKey, g.slot)
	}
	return nil
}

// releaser returns the release function of a grant: the slot (if any) is
// freed locally at once and removed from Redis within releaseDelay.
func (b *Budget) releaser(key, slotsKey, slot string) func() {
	if slot == "" {
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.freeLocked(slotsKey, slot)
			if q := b.queues[key]; q != nil {
				q.wakeHead() // a slot it may be waiting for
			}
			b.mu.Unlock()
		})
	}
}

// freeLocked queues a slot for removal from Redis. Call with b.mu held.
func (b *Budget) freeLocked(slotsKey, slot string) {
	if slot == "" {
		return
	}
	b.freed[slotsKey] = append(b.freed[slotsKey], slot)
	if !b.flushScheduled {
		b.flushScheduled = true
		time.AfterFunc(releaseDelay, b.flushFreed)
	}
}

// flushFreed removes the freed slots from Redis: one ZREM per slots key,
// all in one pipelined round trip. On failure they expire after SlotTTL.
func (b *Budget) flushFreed() {
	b.mu.Lock()
	freed := b.freed
	b.freed = make(map[string][]string)
	b.flushScheduled = false
	b.mu.Unlock()
	if len(freed) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.Timeout)
	defer cancel()
	_, err := b.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for slotsKey, slots := range freed {
			members := make([]any, len(slots))
			for i, s := range slots {
				members[i] = s
			}
			p.ZRem(ctx, slotsKey, members...)
		}
		return nil
	})
	if err != nil {
		b.markDown("release", err)
	}
}

// try runs the acquire script once for up to want grants: a release
// function when granted (the other grants join q's spares), else how long to
// wait (-1: for a slot).
func (b *Budget) try(ctx context.Context, key string, p sentry.Priority, q *budgetQueue, want int) (func(), time.Duration, error) {
	stateKey, slotsKey, win := b.s.budgetKeys(key)
	now := b.o.Now()
	sec := now.Unix()
	inGuard := time.Unix(sec+1, 0).Sub(now) < b.o.Guard
	slotPrefix := b.owner + ":" + strconv.FormatUint(b.slot.Add(1), 10)
	keys := []string{stateKey, slotsKey, win + strconv.FormatInt(sec, 10), win + strconv.FormatInt(sec+1, 10)}
	// The slots freed on this key since the last call ride along.
	b.mu.Lock()
	freed := b.freed[slotsKey]
	delete(b.freed, slotsKey)
	b.mu.Unlock()
	args := make([]any, 0, 8+len(freed))
	args = append(args, now.UnixMilli(), b.o.DefaultLimit, b.o.DefaultConcurrency,
		b.share(p), b01(inGuard), slotPrefix, b.o.SlotTTL.Milliseconds(), max(want, 1))
	for _, s := range freed {
		args = append(args, s)
	}
	cctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	res, err := budgetAcquireScript.Run(cctx, b.s.rdb, keys, args...).Int64Slice()
	if err != nil {
		if len(freed) > 0 { // not removed: they expire after SlotTTL
			b.mu.Lock()
			b.freed[slotsKey] = append(b.freed[slotsKey], freed...)
			b.mu.Unlock()
		}
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
	granted := 1
	if len(res) >= 4 && res[3] > 1 {
		granted = int(res[3])
	}
	slotOf := func(i int) string {
		if !slotted {
			return ""
		}
		return slotPrefix + ":" + strconv.Itoa(i)
	}
	// The grants counted against window sec (and sec+1 in the guard). If the
	// reply came back later than that, sending now could exceed the window
	// it lands in: give them up and try again.
	b.mu.Lock()
	defer b.mu.Unlock()
	if after := b.o.Now().Unix(); after != sec && !(inGuard && after == sec+1) {
		for i := 1; i <= granted; i++ {
			b.freeLocked(slotsKey, slotOf(i))
		}
		return nil, 0, nil
	}
	for i := 2; i <= granted; i++ {
		q.spare = append(q.spare, spareGrant{p: p, sec: sec, inGuard: inGuard, slot: slotOf(i)})
	}
	// The next head takes a spare when this waiter leaves the queue.
	return b.releaser(key, slotsKey, slotOf(1)), 0, nil
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
	if l.Exceeded {
		// A 429 stops everyone until its reset: spare grants taken before it
		// are not used.
		b.mu.Lock()
		if q := b.queues[key]; q != nil {
			_, slotsKey, _ := b.s.budgetKeys(key)
			for _, g := range q.spare {
				b.freeLocked(slotsKey, g.slot)
			}
			q.spare = nil
		}
		b.mu.Unlock()
	}
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
