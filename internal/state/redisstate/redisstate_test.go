package redisstate_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
	"github.com/sentry-jml/sentry-jml/internal/state/statetest"
)

const (
	envURL    = "JML_TEST_REDIS_URL"
	envPrefix = "JML_TEST_REDIS_PREFIX" // set for child processes of the multi-process test
	redisBin  = "/usr/bin/redis-server"
	redisCLI  = "/usr/bin/redis-cli"
)

// TestMain raises -test.parallel (default GOMAXPROCS) unless it was set: the
// suites mostly wait on real TTLs, so on a 2-core machine the default would
// run the waits two at a time and triple the run time.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "64")
	}
	os.Exit(m.Run())
}

func sharedURL() string {
	if u := os.Getenv(envURL); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

// redacted returns u with any password hidden, for messages.
func redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<unparseable URL>"
	}
	return p.Redacted()
}

func randomPrefix(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "jmltest-" + hex.EncodeToString(b[:]) + ":"
}

func open(t *testing.T, opts redisstate.Options) *redisstate.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := redisstate.Open(ctx, opts)
	if err != nil {
		t.Fatalf("redisstate.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// harnessFor returns a newHarness that opens base with a fresh prefix per
// subtest (or the prefix handed down to a child process).
func harnessFor(base redisstate.Options, cleanup bool) func(t *testing.T) statetest.Harness {
	return func(t *testing.T) statetest.Harness {
		opts := base
		opts.Prefix = os.Getenv(envPrefix)
		owned := opts.Prefix == ""
		if owned {
			opts.Prefix = randomPrefix(t)
		}
		s := open(t, opts)
		if cleanup && owned {
			t.Cleanup(func() { deletePrefix(t, s.Client(), opts.Prefix) })
		}
		return statetest.Harness{
			Coord:    s,
			Advance:  time.Sleep,
			NewConn:  func(t *testing.T) state.Coordinator { return open(t, opts) },
			ChildEnv: []string{envPrefix + "=" + opts.Prefix},
		}
	}
}

// deletePrefix removes a test's keys from the shared server (never FLUSHALL).
func deletePrefix(t *testing.T, rdb redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleanup of %s*: %v", prefix, err)
	}
}

// requireShared fails (never skips) when the shared test Redis is down.
func requireShared(t *testing.T) redisstate.Options {
	t.Helper()
	u := sharedURL()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	s, err := redisstate.Open(ctx, redisstate.Options{URL: u})
	if err != nil {
		t.Fatalf("Redis is not reachable at %s (%v). These tests need a Redis 7 server and never skip: "+
			"start one or point %s at it.", redacted(u), err, envURL)
	}
	_ = s.Close()
	return redisstate.Options{URL: u}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("redis", func(t *testing.T) {
		base := requireShared(t)
		statetest.RunTests(t, harnessFor(base, true))
		statetest.RunProcessTests(t, harnessFor(base, true))
	})
	t.Run("redis-sentinel", func(t *testing.T) {
		t.Parallel()
		master := startRedis(t)
		sentinel := startSentinel(t, "jmlmaster", master.port)
		statetest.RunTests(t, harnessFor(redisstate.Options{
			Addrs: []string{sentinel.addr()}, MasterName: "jmlmaster",
		}, false))
	})
	t.Run("redis-cluster", func(t *testing.T) {
		t.Parallel()
		addrs := startCluster(t, 3)
		statetest.RunTests(t, harnessFor(redisstate.Options{Addrs: addrs}, false))
	})
}

// TestRestartLosesDedupeNotFencing restarts a private Redis (no persistence)
// under a live Store: the Store reconnects by itself, every dedupe record and
// lease is gone, and fencing tokens still go up. Losing Redis costs speed
// (work is redone), never a lifecycle change: callers must treat dedupe as an
// optimisation and keep the work behind it idempotent.
func TestRestartLosesDedupeNotFencing(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	s := open(t, redisstate.Options{URL: r.url(), Prefix: "restart:"})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()

	if first, err := s.MarkSeen(ctx, "evt:1", time.Hour); err != nil || !first {
		t.Fatalf("MarkSeen = %t, %v; want true", first, err)
	}
	if first, err := s.MarkSeen(ctx, "evt:1", time.Hour); err != nil || first {
		t.Fatalf("duplicate MarkSeen = %t, %v; want false", first, err)
	}
	old, err := s.Acquire(ctx, "person:1", "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	r.restart(t)

	// The pool holds dead connections; the Store must recover without reopening.
	deadline := time.Now().Add(5 * time.Second)
	var pingErr error
	for attempt := 1; ; attempt++ {
		if pingErr = s.Ping(ctx); pingErr == nil {
			t.Logf("reconnected after %d ping(s)", attempt)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Store did not reconnect after restart: %v", pingErr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if seen, err := s.Seen(ctx, "evt:1"); err != nil || seen {
		t.Fatalf("Seen after restart = %t, %v; want false (records are lost)", seen, err)
	}
	if first, err := s.MarkSeen(ctx, "evt:1", time.Hour); err != nil || !first {
		t.Fatalf("MarkSeen after restart = %t, %v; want true: the event will be processed again", first, err)
	}
	if err := s.Check(ctx, old); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("Check of pre-restart lease: %v; want ErrLeaseLost", err)
	}
	cur, err := s.Acquire(ctx, "person:1", "b", time.Hour)
	if err != nil {
		t.Fatalf("Acquire after restart: %v", err)
	}
	if cur.Token <= old.Token {
		t.Fatalf("token after Redis lost its data = %d; want > %d (tokens must never be reused)", cur.Token, old.Token)
	}
}

func TestKeyLayout(t *testing.T) {
	t.Parallel()
	base := requireShared(t)
	base.Prefix = randomPrefix(t)
	s := open(t, base)
	t.Cleanup(func() { deletePrefix(t, s.Client(), base.Prefix) })
	ctx := t.Context()
	l, err := s.Acquire(ctx, "person:7", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSeen(ctx, "evt:generic:msg_1", time.Minute); err != nil {
		t.Fatal(err)
	}
	rdb := s.Client()
	holder := base.Prefix + "{lease:person:7}:holder"
	if v, err := rdb.Get(ctx, holder).Result(); err != nil || v != "w1:"+strconv.FormatInt(l.Token, 10) {
		t.Fatalf("GET %s = %q, %v; want owner:token", holder, v, err)
	}
	fence := base.Prefix + "{lease:person:7}:fence"
	if v, err := rdb.Get(ctx, fence).Int64(); err != nil || v != l.Token {
		t.Fatalf("GET %s = %d, %v; want %d", fence, v, err, l.Token)
	}
	if ttl, err := rdb.PTTL(ctx, fence).Result(); err != nil || ttl < 24*time.Hour {
		t.Fatalf("PTTL %s = %v, %v; want a long expiry", fence, ttl, err)
	}
	if n, err := rdb.Exists(ctx, base.Prefix+"dedupe:evt:generic:msg_1").Result(); err != nil || n != 1 {
		t.Fatalf("dedupe key missing: %d, %v", n, err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	const secret = "s3cr3t-pw"
	for _, tc := range []struct {
		name string
		opts redisstate.Options
	}{
		{"NoAddress", redisstate.Options{}},
		{"URLAndAddrs", redisstate.Options{URL: "redis://127.0.0.1:6379", Addrs: []string{"127.0.0.1:6379"}}},
		{"BadURL", redisstate.Options{URL: "redis://:" + secret + "@127.0.0.1:notaport/0"}},
		{"BadScheme", redisstate.Options{URL: "http://:" + secret + "@127.0.0.1:6379"}},
		{"Unreachable", redisstate.Options{URL: "redis://:" + secret + "@127.0.0.1:" + strconv.Itoa(freePort(t)) + "/0"}},
		{"BraceInPrefix", redisstate.Options{URL: sharedURL(), Prefix: "a{b}:"}},
		{"SentinelWithURL", redisstate.Options{URL: sharedURL(), MasterName: "m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstate.Open(ctx, tc.opts)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open: err = nil; want an error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("Open error leaks the password: %v", err)
			}
		})
	}
}

// --- private redis-server processes ---

type redisProc struct {
	port int
	args []string
	cmd  *exec.Cmd
}

func (r *redisProc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }
func (r *redisProc) url() string  { return "redis://" + r.addr() }

// handedOut remembers every port freePort returned in this test binary, so
// two parallel tests never get the same port: one test's restart (kill, then
// start again on the same port) leaves the port free for a moment, and a
// second test must not take it and end up talking to the wrong server.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePort returns a TCP port that was free a moment ago and that no other
// test of this binary got. With bus set it also checks port+10000, which
// Redis Cluster uses for its bus.
func freePort(t *testing.T) int { return freePortBus(t, false) }

func freePortBus(t *testing.T, bus bool) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 200 {
		// Below Linux's ephemeral range (32768–60999): a server a test kills
		// and restarts on the same port cannot lose it meanwhile to another
		// binary's "listen on :0" or an outgoing connection's source port.
		port := 20000 + mrand.IntN(12000)
		if handedOut.ports[port] || handedOut.ports[port+10000] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		if !bus {
			handedOut.ports[port] = true
			return port
		}
		if port+10000 > 65535 {
			continue
		}
		lb, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		_ = lb.Close()
		handedOut.ports[port], handedOut.ports[port+10000] = true, true
		return port
	}
	t.Fatal("no free port")
	return 0
}

// startRedis runs a throw-away redis-server without persistence.
func startRedis(t *testing.T, extra ...string) *redisProc {
	t.Helper()
	return startRedisFresh(t, false, extra...)
}

// startRedisFresh starts a server on a fresh port (with its cluster bus port
// free too when bus is set), trying another port when the chosen one was
// taken by another process between the check and redis-server's bind.
func startRedisFresh(t *testing.T, bus bool, extra ...string) *redisProc {
	t.Helper()
	var last error
	for range 5 {
		r := newRedisProc(t, freePortBus(t, bus), extra...)
		if last = r.tryStart(t); last == nil {
			t.Cleanup(func() { r.stop() })
			return r
		}
		t.Logf("redis-server on port %d: %v; trying another port", r.port, last)
	}
	t.Fatal(last)
	return nil
}

func newRedisProc(t *testing.T, port int, extra ...string) *redisProc {
	t.Helper()
	dir := t.TempDir()
	return &redisProc{port: port, args: append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--loglevel", "warning",
	}, extra...)}
}

func (r *redisProc) start(t *testing.T) {
	t.Helper()
	if err := r.tryStart(t); err != nil {
		t.Fatal(err)
	}
}

// tryStart starts the server and waits until it answers. The answer must
// come from the process just started: when another program took the port in
// the meantime, redis-server exits with "address in use" while a ping would
// succeed against the intruder.
func (r *redisProc) tryStart(t *testing.T) error {
	t.Helper()
	r.cmd = exec.Command(redisBin, r.args...)
	dieWithParent(r.cmd)
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", redisBin, err)
	}
	if err := waitPingErr(t.Context(), r.addr()); err != nil {
		r.stop()
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(t.Context(), "server").Result()
	if err != nil {
		r.stop()
		return fmt.Errorf("redis at %s: INFO: %w", r.addr(), err)
	}
	want := "process_id:" + strconv.Itoa(r.cmd.Process.Pid) + "\r\n"
	if !strings.Contains(info, want) {
		r.stop()
		return fmt.Errorf("port %d answers from another redis-server than the one started (pid %d): %w", r.port, r.cmd.Process.Pid, errPortTaken)
	}
	return nil
}

var errPortTaken = errors.New("port taken")

func (r *redisProc) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// restart kills the server (as a crash would) and starts it again, empty.
func (r *redisProc) restart(t *testing.T) {
	t.Helper()
	r.stop()
	r.start(t)
}

func waitPingErr(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis at %s not up: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startSentinel(t *testing.T, master string, masterPort int) *redisProc {
	t.Helper()
	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n",
		port, master, masterPort, master)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &redisProc{port: port, args: []string{conf, "--sentinel", "--loglevel", "warning"}}
	r.start(t)
	t.Cleanup(func() { r.stop() })
	c := redis.NewSentinelClient(&redis.Options{Addr: r.addr()})
	defer c.Close()
	addr, err := c.GetMasterAddrByName(t.Context(), master).Result()
	if err != nil || len(addr) != 2 || addr[1] != strconv.Itoa(masterPort) {
		t.Fatalf("sentinel does not report master: %v, %v", addr, err)
	}
	return r
}

func startCluster(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range n {
		dir := t.TempDir()
		r := startRedisFresh(t, true, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "5000")
		addrs[i] = r.addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-yes")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, redisCLI, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Wait until every node agrees the cluster is up.
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = c.Close()
				t.Fatalf("cluster node %s not ok: %v\n%s", a, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	}
	return addrs
}

// AcquireUnseen and ReleaseSeen: the dedupe record checked with the lease
// and written when releasing it, in the lease's hash slot (no CROSSSLOT on a
// cluster).
func TestLeaseDedupe(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, o redisstate.Options) {
		o.Prefix = randomPrefix(t)
		s := open(t, o)
		t.Cleanup(func() { deletePrefix(t, s.Client(), o.Prefix) })
		ctx := t.Context()
		l, seen, err := s.AcquireUnseen(ctx, "person:7", "w1", time.Minute, "evt:generic:msg_1")
		if err != nil || seen || l.Token <= 0 {
			t.Fatalf("first AcquireUnseen = %+v, seen %v, %v", l, seen, err)
		}
		// Held: a second worker waits, whatever the event.
		if _, _, err := s.AcquireUnseen(ctx, "person:7", "w2", time.Minute, "evt:generic:msg_2"); !errors.Is(err, state.ErrLeaseHeld) {
			t.Fatalf("AcquireUnseen of a held lease: %v", err)
		}
		if err := s.ReleaseSeen(ctx, l, "evt:generic:msg_1", time.Minute); err != nil {
			t.Fatal(err)
		}
		// The processed event is answered as seen without taking the lease…
		if _, seen, err := s.AcquireUnseen(ctx, "person:7", "w2", time.Minute, "evt:generic:msg_1"); err != nil || !seen {
			t.Fatalf("AcquireUnseen of a processed event: seen %v, %v", seen, err)
		}
		// …so another event of the person gets it at once.
		l2, seen, err := s.AcquireUnseen(ctx, "person:7", "w2", time.Minute, "evt:generic:msg_2")
		if err != nil || seen || l2.Token <= l.Token {
			t.Fatalf("next event: %+v seen %v %v (token must exceed %d)", l2, seen, err, l.Token)
		}
		// A stale holder's ReleaseSeen records its event but leaves the
		// current holder's lease alone.
		if err := s.ReleaseSeen(ctx, l, "evt:generic:msg_3", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Check(ctx, l2); err != nil {
			t.Fatalf("stale ReleaseSeen released the current lease: %v", err)
		}
		if _, seen, err := s.AcquireUnseen(ctx, "person:7", "w3", time.Minute, "evt:generic:msg_3"); err != nil || !seen {
			t.Fatalf("event recorded by a stale holder: seen %v, %v", seen, err)
		}
		if o.Addrs == nil {
			key := o.Prefix + "{lease:person:7}:seen:evt:generic:msg_1"
			if ttl, err := s.Client().PTTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
				t.Fatalf("PTTL %s = %v, %v; want the dedupe TTL", key, ttl, err)
			}
		}
	}
	t.Run("redis", func(t *testing.T) { run(t, requireShared(t)) })
	t.Run("redis-cluster", func(t *testing.T) { run(t, redisstate.Options{Addrs: startCluster(t, 3)}) })
}
