package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// schedPolicy runs the full reconcile every second: a 6-field cron (seconds
// first) is the finest reconcile.schedule allows. With the demo seed and an
// empty directory a run changes nothing (orphans are reported), so every tick
// costs the same reads.
const schedPolicy = `
organization: acme
reconcile:
  schedule: "* * * * * *"
`

const (
	// schedLatency is added to every sandbox call: a reconcile run (a few
	// rounds of reads) then lasts well over a few hundred milliseconds, long
	// enough to SIGKILL its process mid-run, and under a second, so a tick
	// fires every second.
	schedLatency = 150 * time.Millisecond
	// schedTTL is the TTL of the scheduler's job lock (state.NewLocker in
	// internal/app/worker.go) and of the reconcile run lease (the default
	// RunLeaseTTL): a SIGKILLed leader's locks block the next tick that long.
	schedTTL    = 10 * time.Second
	schedPrefix = "sched:"
	// Ticks to see run before the kill and after the hand-over.
	schedTicksBefore = 3
	schedTicksAfter  = 3
)

// schedStart is a reconcile run seen starting: a new holder of the fleet-wide
// run lease "reconcile:run" in Redis ("host:pid:token").
type schedStart struct {
	owner, token string
	pid          int
	seen         time.Time
	age          time.Duration // how long the lease had been held when first seen
}

// schedRun is a completed scheduled run, as stored in the reconcile runs
// bucket (JetStream KV): the plan names the replica (host:pid).
type schedRun struct {
	id, owner         string
	pid               int
	started, finished time.Time
}

// schedObserver polls Redis every 10 ms for run-lease holders and collects
// the claimed ticks (dedupe:tick:reconcile:<unix>, 62 s TTL).
type schedObserver struct {
	rdb    *redis.Client
	starts chan schedStart

	mu     sync.Mutex
	seen   []schedStart
	claims map[int64]bool // ticks claimed so far
}

func schedKey(k string) string { return schedPrefix + k }

var (
	schedRunLease = schedKey("{lease:reconcile:run}:holder")
	schedJobLock  = schedKey("{lease:" + state.LockKeyPrefix + "reconcile}:holder")
	schedTickKeys = schedKey("dedupe:tick:reconcile:")
)

func (o *schedObserver) run(ctx context.Context) {
	last := ""
	for i := 0; ctx.Err() == nil; i++ {
		pipe := o.rdb.Pipeline()
		get := pipe.Get(ctx, schedRunLease)
		ttl := pipe.PTTL(ctx, schedRunLease)
		_, _ = pipe.Exec(ctx)
		if v, err := get.Result(); err == nil && v != last {
			last = v
			if s, ok := parseHolder(v); ok {
				s.seen = time.Now()
				if d, err := ttl.Result(); err == nil && d > 0 {
					s.age = schedTTL - d
				}
				o.mu.Lock()
				o.seen = append(o.seen, s)
				o.mu.Unlock()
				select {
				case o.starts <- s:
				default:
				}
			}
		}
		if i%20 == 0 {
			o.scanClaims(ctx)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (o *schedObserver) scanClaims(ctx context.Context) {
	keys, err := o.rdb.Keys(ctx, schedTickKeys+"*").Result()
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		if tick, err := strconv.ParseInt(strings.TrimPrefix(k, schedTickKeys), 10, 64); err == nil {
			o.claims[tick] = true
		}
	}
}

func (o *schedObserver) snapshot() ([]schedStart, []int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ticks := make([]int64, 0, len(o.claims))
	for t := range o.claims {
		ticks = append(ticks, t)
	}
	slices.Sort(ticks)
	return slices.Clone(o.seen), ticks
}

// parseHolder splits a lease holder value "host:pid:token".
func parseHolder(v string) (schedStart, bool) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return schedStart{}, false
	}
	owner, token := v[:i], v[i+1:]
	return schedStart{owner: owner, token: token, pid: ownerPID(owner)}, true
}

// ownerPID is the pid in a worker's owner "host:pid" (cmd/worker).
func ownerPID(owner string) int {
	pid, _ := strconv.Atoi(owner[strings.LastIndexByte(owner, ':')+1:])
	return pid
}

// schedPID is the pid of a running supervised process.
func schedPID(p *proc) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// schedRig is redis-server, natsd, the sandbox and three workers sharing one
// Redis prefix, with schedPolicy. The receiver is not needed: no events flow.
type schedRig struct {
	rdb     *redis.Client
	workers []*proc
	pids    []int
	runs    state.Runs
	obs     *schedObserver
}

func newSchedRig(ctx context.Context, t *testing.T, workers int) *schedRig {
	t.Helper()
	bin := bins(t)
	redisBin := needRedis(t)
	dir := t.TempDir()
	if os.Getenv("JML_CHAOS_KEEP") == "1" {
		d, err := os.MkdirTemp("", "jml-chaos-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
		t.Logf("logs and data kept in %s (JML_CHAOS_KEEP=1)", dir)
	}
	redisPort := freePort(t)
	newProc(t, dir, "redis", redisBin, []string{"--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir}, nil).start()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	newProc(t, dir, "nats", filepath.Join(bin, "natsd"), []string{"-port", strings.TrimPrefix(natsAddr, "127.0.0.1:"),
		"-store", filepath.Join(dir, "nats0")}, nil).start()
	seedFile := filepath.Join(dir, "seed.json")
	b, err := json.Marshal(sentrytest.DemoSeed())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seedFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sbAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	newProc(t, dir, "sandbox", filepath.Join(bin, "jml"), []string{"sandbox", "-addr", sbAddr, "-token", sentryToken,
		"-seed", seedFile, "-rate-limit", "-1", "-latency", schedLatency.String(), "-invite-quota=false"}, nil).start()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(schedPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	redisAddr := fmt.Sprintf("127.0.0.1:%d", redisPort)
	for _, a := range []string{redisAddr, natsAddr, sbAddr} {
		if err := waitTCP(a, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	r := &schedRig{rdb: redis.NewClient(&redis.Options{Addr: redisAddr})}
	t.Cleanup(func() { _ = r.rdb.Close() })
	// Watch Redis from before the first worker starts, so no run is missed.
	r.obs = &schedObserver{rdb: r.rdb, starts: make(chan schedStart, 256), claims: map[int64]bool{}}
	octx, stop := context.WithCancel(ctx)
	var owg sync.WaitGroup
	owg.Go(func() { r.obs.run(octx) })
	t.Cleanup(func() { stop(); owg.Wait() })

	var admins []string
	for i := range workers {
		admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		w := newProc(t, dir, fmt.Sprintf("worker%d", i), filepath.Join(bin, "worker"), nil, []string{
			"JML_NATS_URL=nats://" + natsAddr, "JML_LOG_LEVEL=info", "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none",
			"JML_ADMIN_ADDR=" + admin, "JML_ADMIN_TOKEN=" + adminToken, "JML_REDIS_URL=redis://" + redisAddr, "JML_REDIS_PREFIX=" + schedPrefix,
			"JML_SENTRY_URL=http://" + sbAddr, "JML_SENTRY_ORG=acme", "JML_SENTRY_TOKEN=" + sentryToken, "JML_POLICY_FILE=" + policyFile})
		w.start()
		r.workers = append(r.workers, w)
		r.pids = append(r.pids, schedPID(w))
		admins = append(admins, admin)
	}
	for _, a := range admins {
		if err := waitHTTP(ctx, "http://"+a+"/readyz", 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	records, err := jsstate.Open(ctx, js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.runs = records.Runs
	return r
}

// worker returns the index of the worker with pid (-1 if none).
func (r *schedRig) worker(pid int) int { return slices.Index(r.pids, pid) }

func (r *schedRig) name(pid int) string {
	if i := r.worker(pid); i >= 0 {
		return r.workers[i].name
	}
	return fmt.Sprintf("pid %d (not a worker)", pid)
}

// scheduledRuns lists the stored runs the scheduler triggered, oldest first.
func (r *schedRig) scheduledRuns(ctx context.Context) ([]schedRun, error) {
	var out []schedRun
	for run, err := range r.runs.List(ctx) {
		if err != nil {
			return nil, err
		}
		pl, err := reconcile.DecodePlan(run.Plan)
		if err != nil {
			return nil, err
		}
		if pl.Trigger != "schedule" {
			continue
		}
		out = append(out, schedRun{id: run.ID, owner: pl.Owner, pid: ownerPID(pl.Owner), started: run.StartedAt, finished: run.FinishedAt})
	}
	slices.SortFunc(out, func(a, b schedRun) int { return a.started.Compare(b.started) })
	return out, nil
}

// tickOf is the claimed tick a run started at `at` belongs to: the latest
// claim at or before it. The claim is made (by the job-lock holder, which
// keeps the lock until its run ends) just before the run starts; the tick is
// the firing time rounded to the second, so it may be up to 0.5 s later.
func tickOf(ticks []int64, at time.Time) (int64, bool) {
	best, ok := int64(0), false
	for _, t := range ticks {
		if !time.Unix(t, 0).After(at.Add(500 * time.Millisecond)) {
			best, ok = t, true
		}
	}
	return best, ok
}

// TestChaosSchedulerLeaderKill runs three worker processes sharing one Redis
// with a reconcile scheduled every second against a sandbox whose every call
// takes 150 ms. Each tick must run exactly once fleet-wide: every stored run
// belongs to a distinct claimed tick and no two runs overlap. It then SIGKILLs
// the worker running a tick a moment after the run started: the job lock and
// the run lease stay with the dead process until their 30 s TTL, after which
// a survivor must run the following ticks, still once per tick, and the killed
// tick must not be run again. Not parallel: a tick a second needs the CPU.
func TestChaosSchedulerLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short")
	}
	bins(t) // before the clock starts: the first test to run builds them
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newSchedRig(ctx, t, 3)
	ready := time.Since(began)

	runs := func() []schedRun {
		t.Helper()
		rs, err := r.scheduledRuns(ctx)
		if err != nil {
			t.Fatalf("list reconcile runs: %v", err)
		}
		return rs
	}

	// A few ticks first.
	deadline := time.Now().Add(20 * time.Second)
	for len(runs()) < schedTicksBefore {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d scheduled reconcile runs within 20 s of the workers being ready: %+v", schedTicksBefore, runs())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Kill the worker whose run started a moment ago (the run lease changed
	// hands less than 250 ms before), while the run is reading Sentry.
	var victim schedStart
	deadline = time.Now().Add(15 * time.Second)
wait:
	for {
		select {
		case s := <-r.obs.starts:
			if time.Since(s.seen) < 50*time.Millisecond && s.age < 250*time.Millisecond && r.worker(s.pid) >= 0 {
				victim = s
				break wait
			}
		case <-time.After(time.Until(deadline)):
			t.Fatal("no reconcile run was seen starting within 15 s")
		}
	}
	vi := r.worker(victim.pid)
	killAt := time.Now()
	into := killAt.Sub(victim.seen) + victim.age
	r.workers[vi].kill()
	t.Logf("SIGKILLed %s (pid %d) %s into its run at %s", r.workers[vi].name, victim.pid, into.Round(time.Millisecond),
		killAt.Format("15:04:05.000"))

	// Mid-run: the dead process still holds the run lease it took (a finished
	// run releases it) and the scheduler's job lock.
	holder, _ := r.rdb.Get(ctx, schedRunLease).Result()
	if holder != victim.owner+":"+victim.token {
		t.Fatalf("run lease holder after the kill is %q, want the victim's %q: the run ended before the SIGKILL", holder,
			victim.owner+":"+victim.token)
	}
	lockHolder, _ := r.rdb.Get(ctx, schedJobLock).Result()
	lockTTL, _ := r.rdb.PTTL(ctx, schedJobLock).Result()
	leaseTTL, _ := r.rdb.PTTL(ctx, schedRunLease).Result()
	if !strings.HasPrefix(lockHolder, victim.owner+":") {
		t.Errorf("job lock %q after the kill is held by %q, want the victim %s", schedJobLock, lockHolder, victim.owner)
	}

	// The next ticks go to survivors once the dead worker's locks expire.
	var after []schedRun
	deadline = killAt.Add(schedTTL + 10*time.Second)
	for {
		after = after[:0]
		for _, run := range runs() {
			if run.started.After(killAt) {
				after = append(after, run)
			}
		}
		if len(after) >= schedTicksAfter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after killing %s, %d scheduled runs by the survivors, want %d (job lock TTL was %s, run lease TTL %s)",
				time.Since(killAt).Round(time.Millisecond), r.workers[vi].name, len(after), schedTicksAfter, lockTTL, leaseTTL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	end := time.Now()
	r.obs.scanClaims(ctx)
	starts, ticks := r.obs.snapshot()
	all := runs()

	// Every stored run belongs to its own claimed tick, and runs never overlap.
	byTick := map[int64][]schedRun{}
	var lastTick int64
	overlaps := 0
	for i, run := range all {
		if i > 0 && run.started.Before(all[i-1].finished) {
			overlaps++
			t.Errorf("run %s by %s started at %s, before run %s by %s finished at %s", run.id, r.name(run.pid),
				run.started.Format("15:04:05.000"), all[i-1].id, r.name(all[i-1].pid), all[i-1].finished.Format("15:04:05.000"))
		}
		tick, ok := tickOf(ticks, run.started)
		if !ok {
			t.Errorf("run %s by %s started at %s without a claimed tick", run.id, r.name(run.pid), run.started.Format("15:04:05.000"))
			continue
		}
		byTick[tick] = append(byTick[tick], run)
		lastTick = max(lastTick, tick)
	}
	maxPerTick := 0
	for tick, rs := range byTick {
		maxPerTick = max(maxPerTick, len(rs))
		if len(rs) > 1 {
			var who []string
			for _, run := range rs {
				who = append(who, fmt.Sprintf("%s by %s at %s", run.id, r.name(run.pid), run.started.Format("15:04:05.000")))
			}
			t.Errorf("tick %s ran %d times: %s", time.Unix(tick, 0).UTC().Format("15:04:05"), len(rs), strings.Join(who, ", "))
		}
	}
	// Every run seen starting is stored, except the killed one.
	for _, s := range starts {
		if s.token == victim.token {
			continue
		}
		found := false
		for _, run := range all {
			if d := s.seen.Sub(run.started); run.pid == s.pid && d > -500*time.Millisecond && d < 500*time.Millisecond {
				found = true
			}
		}
		if !found && s.seen.Before(end.Add(-2*time.Second)) {
			t.Errorf("%s started a run at %s (lease token %s) that is not stored", r.name(s.pid), s.seen.Format("15:04:05.000"), s.token)
		}
	}

	// The killed tick ran nowhere; survivors took the ticks after it.
	killedTick, ok := tickOf(ticks, victim.seen)
	if !ok {
		t.Errorf("no claimed tick for the killed run (seen at %s)", victim.seen.Format("15:04:05.000"))
	}
	if rs := byTick[killedTick]; len(rs) > 0 {
		t.Errorf("the killed tick %s was run again by %s", time.Unix(killedTick, 0).UTC().Format("15:04:05"), r.name(rs[0].pid))
	}
	var before []schedRun
	beforeBy, afterBy := map[string]int{}, map[string]int{}
	for _, run := range all {
		switch {
		case run.started.Before(killAt):
			before = append(before, run)
			beforeBy[r.name(run.pid)]++
		default:
			afterBy[r.name(run.pid)]++
			if run.pid == victim.pid {
				t.Errorf("run %s at %s is by the killed worker", run.id, run.started.Format("15:04:05.000"))
			}
		}
	}
	if len(before) < schedTicksBefore {
		t.Errorf("%d runs before the kill, want at least %d", len(before), schedTicksBefore)
	}
	firstAfter := after[0]
	handover := firstAfter.started.Sub(killAt)
	if handover > schedTTL+5*time.Second {
		t.Errorf("hand-over took %s, want within the %s lock TTL plus a tick", handover.Round(time.Millisecond), schedTTL)
	}
	// Claimed ticks nobody ran: the killed one, and at most one in the
	// hand-over (claimed when the dead worker's job lock expired while its run
	// lease, taken a moment after the lock, was still held: reconcile.ErrBusy).
	firstAfterTick, _ := tickOf(ticks, firstAfter.started)
	var busy []string
	notRun := 0
	for _, tick := range ticks {
		if tick > lastTick || len(byTick[tick]) > 0 || tick == killedTick {
			continue
		}
		notRun++
		at := time.Unix(tick, 0).UTC().Format("15:04:05")
		if tick > killedTick && tick < firstAfterTick {
			busy = append(busy, at)
			continue
		}
		t.Errorf("tick %s was claimed but no run is stored for it", at)
	}
	if len(busy) > 1 {
		t.Errorf("%d ticks claimed but not run during the hand-over (%v), want at most 1", len(busy), busy)
	}
	for _, w := range r.workers {
		if _, _, c := w.counts(); c > 0 {
			t.Errorf("%s exited unprovoked: %v", w.name, w.crashNotes())
		}
	}
	// Which process ran each claimed tick.
	var timeline []string
	for _, tick := range ticks {
		who := "-"
		switch {
		case tick == killedTick:
			who = r.workers[vi].name + " (SIGKILLed)"
		case len(byTick[tick]) > 0:
			var names []string
			for _, run := range byTick[tick] {
				names = append(names, r.name(run.pid))
			}
			who = strings.Join(names, "+")
		}
		timeline = append(timeline, time.Unix(tick, 0).UTC().Format("15:04:05")+" "+who)
	}
	t.Logf("ticks: %s", strings.Join(timeline, ", "))
	var gaps []string
	for i := 1; i < len(after); i++ {
		gaps = append(gaps, after[i].started.Sub(after[i-1].started).Round(10*time.Millisecond).String())
	}
	var durs []time.Duration
	for _, run := range all {
		durs = append(durs, run.finished.Sub(run.started))
	}
	slices.Sort(durs)
	result := "PASS"
	if t.Failed() {
		result = "FAIL"
	}
	t.Logf("chaos: %s scheduler workers=3 schedule=every 1s sandbox latency=%s | ticks claimed=%d, run=%d (before the kill %d %v, after %d %v), "+
		"max runs per tick=%d, overlapping runs=%d, claimed-not-run=%d (the killed tick + %d busy at hand-over) | "+
		"run took median %s max %s | killed %s %s into its run; its job lock then had %s left, its run lease %s | "+
		"hand-over delay %s (first survivor run %s by %s), then every %v | ready in %s, total %s",
		result, schedLatency, len(ticks), len(all), len(before), beforeBy, len(all)-len(before), afterBy,
		maxPerTick, overlaps, notRun+1, len(busy), durs[len(durs)/2].Round(time.Millisecond), durs[len(durs)-1].Round(time.Millisecond),
		r.workers[vi].name, into.Round(time.Millisecond), lockTTL.Round(time.Millisecond), leaseTTL.Round(time.Millisecond),
		handover.Round(time.Millisecond), firstAfter.started.Format("15:04:05.000"), r.name(firstAfter.pid), gaps,
		ready.Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond))
}
