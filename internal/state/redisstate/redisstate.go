package redisstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

var _ state.Coordinator = (*Store)(nil)

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "jml:"

// fenceTTL is how long an idle fencing counter is kept. Tokens also never go
// below the Redis server time in microseconds, so they keep increasing after
// the counter expires or Redis loses its data.
const fenceTTL = 7 * 24 * time.Hour

// Options configures Open. Exactly one of URL or Addrs is needed.
type Options struct {
	// URL is a redis:// or rediss:// URL for a single node (see redis.ParseURL).
	URL string
	// Addrs are host:port addresses: one for a single node, two or more for
	// Cluster, or the Sentinels when MasterName is set.
	Addrs []string
	// MasterName selects Sentinel: the name of the monitored master.
	MasterName string
	// Password overrides the password from URL; with Sentinel it is the
	// master's password.
	Password string
	// Prefix is prepended to every key; default "jml:". It must not contain
	// '{' or '}' (they would break Cluster hash tags).
	Prefix string
}

// Store is a state.Coordinator on Redis. It is safe for concurrent use.
//
// Key layout (all under Prefix): "dedupe:<key>" for dedupe records;
// "{lease:<key>}:holder" holding "owner:token" with the lease's expiry,
// "{lease:<key>}:fence", the last token issued for key, and
// "{lease:<key>}:seen:<dedupe key>", dedupe records checked and written with
// the lease (AcquireUnseen, ReleaseSeen) in the lease's Cluster slot. A new token is the
// fence plus one but never less than the Redis server time in microseconds,
// so tokens keep increasing when the fence expires (after a week idle) or
// Redis loses its data, as long as the server clock does not step back.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// Open connects to Redis as described by opts and pings it.
func Open(ctx context.Context, opts Options) (*Store, error) {
	uo, err := opts.universal()
	if err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redisstate: prefix %q must not contain '{' or '}'", prefix)
	}
	s := &Store{rdb: redis.NewUniversalClient(uo), prefix: prefix}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		_ = s.rdb.Close()
		return nil, fmt.Errorf("redisstate: open: ping: %w", err)
	}
	return s, nil
}

func (o Options) universal() (*redis.UniversalOptions, error) {
	switch {
	case o.URL != "" && len(o.Addrs) > 0:
		return nil, errors.New("redisstate: set URL or Addrs, not both")
	case o.URL != "" && o.MasterName != "":
		return nil, errors.New("redisstate: MasterName needs Addrs (the Sentinels), not URL")
	case o.URL != "":
		p, err := redis.ParseURL(o.URL)
		if err != nil {
			// The parse error may quote the URL, which can carry a password.
			return nil, errors.New("redisstate: invalid Redis URL")
		}
		uo := &redis.UniversalOptions{
			Addrs:           []string{p.Addr},
			ClientName:      p.ClientName,
			DB:              p.DB,
			Protocol:        p.Protocol,
			Username:        p.Username,
			Password:        p.Password,
			MaxRetries:      p.MaxRetries,
			MinRetryBackoff: p.MinRetryBackoff,
			MaxRetryBackoff: p.MaxRetryBackoff,
			DialTimeout:     p.DialTimeout,
			ReadTimeout:     p.ReadTimeout,
			WriteTimeout:    p.WriteTimeout,
			PoolFIFO:        p.PoolFIFO,
			PoolSize:        p.PoolSize,
			PoolTimeout:     p.PoolTimeout,
			MinIdleConns:    p.MinIdleConns,
			MaxIdleConns:    p.MaxIdleConns,
			MaxActiveConns:  p.MaxActiveConns,
			ConnMaxIdleTime: p.ConnMaxIdleTime,
			ConnMaxLifetime: p.ConnMaxLifetime,
			TLSConfig:       p.TLSConfig,
		}
		if o.Password != "" {
			uo.Password = o.Password
		}
		return uo, nil
	case len(o.Addrs) > 0:
		return &redis.UniversalOptions{
			Addrs:      o.Addrs,
			MasterName: o.MasterName,
			Password:   o.Password,
		}, nil
	default:
		return nil, errors.New("redisstate: URL or Addrs is required")
	}
}

// Client returns the underlying client, for callers that need Redis for
// something else. Closing it closes the Store.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Ping checks the connection.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstate: ping: %w", err)
	}
	return nil
}

// Close closes the client.
func (s *Store) Close() error {
	if err := s.rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redisstate: close: %w", err)
	}
	return nil
}

func (s *Store) dedupeKey(key string) string { return s.prefix + "dedupe:" + key }

// leaseKeys returns the holder and fence keys of a lease. The shared hash tag
// puts both in one Cluster slot so a script may touch them together.
func (s *Store) leaseKeys(key string) []string {
	tag := s.prefix + "{lease:" + key + "}"
	return []string{tag + ":holder", tag + ":fence"}
}

func holderValue(owner string, token int64) string {
	return owner + ":" + strconv.FormatInt(token, 10)
}

func ttlMillis(op, key string, ttl time.Duration) (int64, error) {
	ms := ttl.Milliseconds()
	if ms < 1 {
		return 0, fmt.Errorf("redisstate: %s %q: ttl must be at least 1ms, got %v", op, key, ttl)
	}
	return ms, nil
}

// MarkSeen implements state.Deduper with SET NX PX.
func (s *Store) MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if _, err := ttlMillis("mark seen", key, ttl); err != nil {
		return false, err
	}
	err := s.rdb.SetArgs(ctx, s.dedupeKey(key), "1", redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, redis.Nil):
		return false, nil
	default:
		return false, fmt.Errorf("redisstate: mark seen %q: %w", key, err)
	}
}

// Seen implements state.Deduper.
func (s *Store) Seen(ctx context.Context, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.dedupeKey(key)).Result()
	if err != nil {
		return false, fmt.Errorf("redisstate: seen %q: %w", key, err)
	}
	return n == 1, nil
}

// Forget implements state.Deduper.
func (s *Store) Forget(ctx context.Context, key string) error {
	if err := s.rdb.Del(ctx, s.dedupeKey(key)).Err(); err != nil {
		return fmt.Errorf("redisstate: forget %q: %w", key, err)
	}
	return nil
}

// acquireScript takes the lease if nobody holds it. The new token is the
// fence counter plus one, but never less than the server time in
// microseconds, so tokens keep increasing even if the counter is lost.
// KEYS: holder, fence. ARGV: owner, ttl ms, fence ttl ms.
// Returns the token, or false when the lease is held.
var acquireScript = redis.NewScript(acquireLua)

const acquireLua = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local step = now - cur
if step < 1 then step = 1 end
local t = redis.call('INCRBY', KEYS[2], string.format('%d', step))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
-- %d, not tostring: Lua prints large numbers as 1.79e+15.
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. string.format('%d', t), 'PX', ARGV[2])
return t
`

// renewScript extends the lease if owner:token still holds it.
// KEYS: holder. ARGV: owner:token, ttl ms. Returns 1 if renewed, else 0.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseScript deletes the lease if owner:token still holds it.
// KEYS: holder. ARGV: owner:token. Returns 1 if released, else 0.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Acquire implements state.Leaser. A lease is not re-entrant: while any
// owner, including the caller, holds key, Acquire returns state.ErrLeaseHeld.
func (s *Store) Acquire(ctx context.Context, key, owner string, ttl time.Duration) (state.Lease, error) {
	ms, err := ttlMillis("acquire", key, ttl)
	if err != nil {
		return state.Lease{}, err
	}
	start := time.Now()
	tok, err := acquireScript.Run(ctx, s.rdb, s.leaseKeys(key), owner, ms, fenceTTL.Milliseconds()).Int64()
	switch {
	case err == nil:
		return state.Lease{Key: key, Owner: owner, Token: tok, Expires: start.Add(ttl)}, nil
	case errors.Is(err, redis.Nil):
		return state.Lease{}, fmt.Errorf("redisstate: acquire %q: %w", key, state.ErrLeaseHeld)
	default:
		return state.Lease{}, fmt.Errorf("redisstate: acquire %q: %w", key, err)
	}
}

// Renew implements state.Leaser.
func (s *Store) Renew(ctx context.Context, l state.Lease, ttl time.Duration) (state.Lease, error) {
	ms, err := ttlMillis("renew", l.Key, ttl)
	if err != nil {
		return state.Lease{}, err
	}
	start := time.Now()
	n, err := renewScript.Run(ctx, s.rdb, s.leaseKeys(l.Key)[:1], holderValue(l.Owner, l.Token), ms).Int64()
	if err != nil {
		return state.Lease{}, fmt.Errorf("redisstate: renew %q: %w", l.Key, err)
	}
	if n != 1 {
		return state.Lease{}, fmt.Errorf("redisstate: renew %q: %w", l.Key, state.ErrLeaseLost)
	}
	l.Expires = start.Add(ttl)
	return l, nil
}

// Release implements state.Leaser.
func (s *Store) Release(ctx context.Context, l state.Lease) error {
	if err := releaseScript.Run(ctx, s.rdb, s.leaseKeys(l.Key)[:1], holderValue(l.Owner, l.Token)).Err(); err != nil {
		return fmt.Errorf("redisstate: release %q: %w", l.Key, err)
	}
	return nil
}

// Check implements state.Leaser with a single GET.
func (s *Store) Check(ctx context.Context, l state.Lease) error {
	v, err := s.rdb.Get(ctx, s.leaseKeys(l.Key)[0]).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return fmt.Errorf("redisstate: check %q: %w", l.Key, state.ErrLeaseLost)
	case err != nil:
		return fmt.Errorf("redisstate: check %q: %w", l.Key, err)
	case v != holderValue(l.Owner, l.Token):
		return fmt.Errorf("redisstate: check %q: %w", l.Key, state.ErrLeaseLost)
	}
	return nil
}

// acquireUnseenScript is acquireScript preceded by a dedupe check: an event
// already processed is answered without taking the lease.
// KEYS: holder, fence, seen. ARGV: owner, ttl ms, fence ttl ms.
// Returns -1 when seen, false when the lease is held, else the token.
var acquireUnseenScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
` + acquireLua)

// releaseSeenScript records the dedupe key, then releases the lease if
// owner:token still holds it. KEYS: holder, seen. ARGV: owner:token, seen
// ttl ms. Returns 1 if the lease was released, else 0.
var releaseSeenScript = redis.NewScript(`
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func (s *Store) seenKey(leaseKey, dedupeKey string) string {
	return s.prefix + "{lease:" + leaseKey + "}:seen:" + dedupeKey
}

// AcquireUnseen takes the lease on key, like Acquire, unless dedupeKey was
// recorded by ReleaseSeen under the same lease key (seen is then true and no
// lease is taken): the worker's dedupe check and lease in one round trip.
func (s *Store) AcquireUnseen(ctx context.Context, key, owner string, ttl time.Duration, dedupeKey string) (l state.Lease, seen bool, err error) {
	ms, err := ttlMillis("acquire", key, ttl)
	if err != nil {
		return state.Lease{}, false, err
	}
	start := time.Now()
	keys := append(s.leaseKeys(key), s.seenKey(key, dedupeKey))
	tok, err := acquireUnseenScript.Run(ctx, s.rdb, keys, owner, ms, fenceTTL.Milliseconds()).Int64()
	switch {
	case err == nil && tok < 0:
		return state.Lease{}, true, nil
	case err == nil:
		return state.Lease{Key: key, Owner: owner, Token: tok, Expires: start.Add(ttl)}, false, nil
	case errors.Is(err, redis.Nil):
		return state.Lease{}, false, fmt.Errorf("redisstate: acquire %q: %w", key, state.ErrLeaseHeld)
	default:
		return state.Lease{}, false, fmt.Errorf("redisstate: acquire %q: %w", key, err)
	}
}

// ReleaseSeen records dedupeKey for ttl under the lease's key, then releases
// the lease (if l still holds it): the end of a processed event in one round
// trip.
func (s *Store) ReleaseSeen(ctx context.Context, l state.Lease, dedupeKey string, ttl time.Duration) error {
	ms, err := ttlMillis("mark seen", dedupeKey, ttl)
	if err != nil {
		return err
	}
	keys := []string{s.leaseKeys(l.Key)[0], s.seenKey(l.Key, dedupeKey)}
	if err := releaseSeenScript.Run(ctx, s.rdb, keys, holderValue(l.Owner, l.Token), ms).Err(); err != nil {
		return fmt.Errorf("redisstate: release %q: %w", l.Key, err)
	}
	return nil
}
