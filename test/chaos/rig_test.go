package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
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

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

const (
	sentryToken   = "sntryu_" + "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
	genericSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	adminToken    = "chaos-admin-token-c0ffee00c0ffee00"
)

// rigOptions shape one run.
type rigOptions struct {
	NATSNodes       int // 1, or 3 for a cluster with R3 streams and KV
	Workers         int
	StartWorkers    int // how many workers start with the rig (0 = all)
	RateLimit       int // sandbox requests/s per (token, URL pattern, method); -1 = off
	ConcurrentLimit int // sandbox concurrency cap per (token, URL pattern); 0 = 25
	Latency         time.Duration
	Seed            *sentrytest.Seed
	FaultSeed       uint64
}

// rig is one isolated deployment: redis-server, natsd (1 or 3 nodes),
// the sandbox (`jml sandbox`), one webhook receiver and some workers, each its own process.
type rig struct {
	t   *testing.T
	o   rigOptions
	dir string

	redisPort int
	redis     *proc
	nats      []*proc
	natsURLs  []string
	sandbox   *proc
	sbURL     string
	webhook   *proc
	hookURL   string
	workers   []*proc
	admin     []string
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	bin := bins(t)
	redisBin := needRedis(t)
	if o.NATSNodes == 0 {
		o.NATSNodes = 1
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	dir := t.TempDir()
	if os.Getenv("JML_CHAOS_KEEP") == "1" {
		d, err := os.MkdirTemp("", "jml-chaos-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
		t.Logf("logs and data kept in %s (JML_CHAOS_KEEP=1)", dir)
	}
	r := &rig{t: t, o: o, dir: dir}

	// Redis without persistence: a restart is also a flush.
	r.redisPort = freePort(t)
	r.redis = newProc(t, dir, "redis", redisBin, []string{"--port", strconv.Itoa(r.redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir}, nil)
	r.redis.start()

	// NATS.
	clientPorts := make([]int, o.NATSNodes)
	routePorts := make([]int, o.NATSNodes)
	var routes []string
	for i := range clientPorts {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i]))
	}
	for i := range o.NATSNodes {
		name := "nats"
		args := []string{"-port", strconv.Itoa(clientPorts[i]), "-store", filepath.Join(dir, fmt.Sprintf("nats%d", i))}
		if o.NATSNodes > 1 {
			name = fmt.Sprintf("nats%d", i)
			args = append(args, "-name", name, "-cluster-name", "jml-chaos", "-cluster-port", strconv.Itoa(routePorts[i]),
				"-routes", strings.Join(routes, ","))
		}
		p := newProc(t, dir, name, filepath.Join(bin, "natsd"), args, nil)
		p.start()
		r.nats = append(r.nats, p)
		r.natsURLs = append(r.natsURLs, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}

	// Sandbox.
	seed := o.Seed
	if seed == nil {
		seed = sentrytest.DemoSeed()
	}
	seedFile := filepath.Join(dir, "seed.json")
	b, err := json.Marshal(seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seedFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sbAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	r.sbURL = "http://" + sbAddr
	r.sandbox = newProc(t, dir, "sandbox", filepath.Join(bin, "jml"), []string{"sandbox", "-addr", sbAddr, "-token", sentryToken,
		"-seed", seedFile, "-rate-limit", strconv.Itoa(o.RateLimit), "-concurrent-limit", strconv.Itoa(o.ConcurrentLimit),
		"-latency", o.Latency.String(), "-invite-quota=false", "-fault-seed", strconv.FormatUint(o.FaultSeed, 10)}, nil)
	r.sandbox.start()

	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(chaosPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{sbAddr, fmt.Sprintf("127.0.0.1:%d", r.redisPort)} {
		if err := waitTCP(a, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range r.natsURLs {
		if err := waitTCP(strings.TrimPrefix(u, "nats://"), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	replicas := "1"
	if o.NATSNodes > 1 {
		replicas = "3"
		r.waitJetStreamCluster()
	}
	common := []string{"JML_NATS_URL=" + strings.Join(r.natsURLs, ","), "JML_STREAM_REPLICAS=" + replicas, "JML_LOG_LEVEL=info",
		"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none"}

	hookAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	r.hookURL = "http://" + hookAddr
	r.webhook = newProc(t, dir, "webhook", filepath.Join(bin, "webhook"), nil,
		append(common, "JML_HTTP_ADDR="+hookAddr, fmt.Sprintf("JML_ADMIN_ADDR=127.0.0.1:%d", freePort(t)), "JML_SOURCE_GENERIC_SECRET="+genericSecret))
	r.webhook.restartOnCrash = true
	r.webhook.start()

	for i := range o.Workers {
		admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		w := newProc(t, dir, fmt.Sprintf("worker%d", i), filepath.Join(bin, "worker"), nil, append(common,
			"JML_ADMIN_ADDR="+admin, "JML_ADMIN_TOKEN="+adminToken, fmt.Sprintf("JML_REDIS_URL=redis://127.0.0.1:%d", r.redisPort), "JML_REDIS_PREFIX=chaos:",
			"JML_SENTRY_URL="+r.sbURL, "JML_SENTRY_ORG=acme", "JML_SENTRY_TOKEN="+sentryToken, "JML_POLICY_FILE="+policyFile))
		w.restartOnCrash = true
		r.workers = append(r.workers, w)
		r.admin = append(r.admin, admin)
	}
	started := o.Workers
	if o.StartWorkers > 0 {
		started = o.StartWorkers
	}
	for _, w := range r.workers[:started] {
		w.start()
	}
	ctx := context.Background()
	// Creating a dozen replicated (R3) buckets and streams on a cluster that
	// shares two cores with the other chaos tests can take over a minute.
	ready := 60 * time.Second
	if o.NATSNodes > 1 {
		ready = 150 * time.Second
	}
	if err := waitHTTP(ctx, r.hookURL+"/readyz", ready); err != nil {
		t.Fatal(err)
	}
	for i, a := range r.admin[:started] {
		if err := waitHTTP(ctx, "http://"+a+"/readyz", ready); err != nil {
			t.Fatal(err)
		}
		var ctl map[string]any
		if err := r.adminDo(i, http.MethodGet, "/v1/control", &ctl); err != nil {
			t.Fatalf("admin API of %s with the rig's token: %v", a, err)
		}
	}
	return r
}

// adminDo calls worker i's admin API (with the operator token) and decodes
// the JSON answer into out.
func (r *rig) adminDo(i int, method, path string, out any) error {
	req, err := http.NewRequest(method, "http://"+r.admin[i]+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

// waitJetStreamCluster waits until the cluster has a meta leader.
func (r *rig) waitJetStreamCluster() {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		nc, err := nats.Connect(strings.Join(r.natsURLs, ","), nats.Timeout(time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.t.Fatal("the NATS cluster did not elect a JetStream meta leader within 60 s")
}

func (r *rig) sandboxJSON(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.sbURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (r *rig) injectFaults(fs ...sentrytest.Fault) {
	r.t.Helper()
	if err := r.sandboxJSON(http.MethodPost, "/_sandbox/faults", fs, nil); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) clearFaults() error {
	return r.sandboxJSON(http.MethodDelete, "/_sandbox/faults", nil, nil)
}

func (r *rig) stats() (sentrytest.Stats, error) {
	var s sentrytest.Stats
	err := r.sandboxJSON(http.MethodGet, "/_sandbox/stats", nil, &s)
	return s, err
}

func (r *rig) members() ([]sentrytest.MemberView, error) {
	var ms []sentrytest.MemberView
	err := r.sandboxJSON(http.MethodGet, "/_sandbox/members", nil, &ms)
	return ms, err
}

func (r *rig) requestLog() ([]sentrytest.LoggedRequest, error) {
	var l []sentrytest.LoggedRequest
	err := r.sandboxJSON(http.MethodGet, "/_sandbox/requests", nil, &l)
	return l, err
}

func (r *rig) flushRedis(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.redisPort)})
	defer c.Close()
	return c.FlushAll(ctx).Err()
}

// js connects the test itself to NATS (for checks only).
func (r *rig) js() (*nats.Conn, jetstream.JetStream) {
	r.t.Helper()
	nc, err := nats.Connect(strings.Join(r.natsURLs, ","), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		r.t.Fatal(err)
	}
	return nc, js
}

// progress is the consumer's view of the work.
type progress struct {
	LastSeq, AckFloor         uint64
	NumPending, NumAckPending uint64
	Redelivered               int
	DLQ                       uint64
}

func (p progress) done() bool {
	return p.NumPending == 0 && p.NumAckPending == 0 && p.AckFloor == p.LastSeq && p.LastSeq > 0
}

func readProgress(ctx context.Context, js jetstream.JetStream) (progress, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var p progress
	st, err := js.Stream(ctx, events.StreamEvents)
	if err != nil {
		return p, err
	}
	si, err := st.Info(ctx)
	if err != nil {
		return p, err
	}
	cons, err := js.Consumer(ctx, events.StreamEvents, events.ConsumerWorker)
	if err != nil {
		return p, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return p, err
	}
	p.LastSeq, p.AckFloor = si.State.LastSeq, ci.AckFloor.Stream
	p.NumPending, p.NumAckPending, p.Redelivered = ci.NumPending, uint64(ci.NumAckPending), ci.NumRedelivered
	dlq, err := js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		return p, err
	}
	di, err := dlq.Info(ctx)
	if err != nil {
		return p, err
	}
	p.DLQ = di.State.Msgs
	return p, nil
}

// waitDone waits until every message in JML_EVENTS is acknowledged (twice in
// a row, a second apart).
func waitDone(ctx context.Context, t *testing.T, js jetstream.JetStream, timeout time.Duration) (progress, error) {
	deadline := time.Now().Add(timeout)
	var last progress
	var lastErr error
	streak := 0
	lastLog := time.Now()
	for time.Now().Before(deadline) {
		p, err := readProgress(ctx, js)
		if time.Since(lastLog) >= 10*time.Second {
			t.Logf("progress at %s: %+v err=%v", time.Now().Format("15:04:05"), p, err)
			lastLog = time.Now()
		}
		if err == nil {
			last = p
			if p.done() {
				streak++
				if streak >= 2 {
					return p, nil
				}
			} else {
				streak = 0
			}
		} else {
			lastErr = err
			streak = 0
		}
		time.Sleep(time.Second)
	}
	return last, fmt.Errorf("not every event was processed within %s: %+v (last error: %v)", timeout, last, lastErr)
}

// streamIDs reads every message's Nats-Msg-Id from JML_EVENTS.
func streamIDs(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, events.StreamEvents)
	if err != nil {
		return nil, err
	}
	si, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	ids := map[string]int{}
	var n uint64
	for n < si.State.Msgs {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			ids[m.Headers().Get(events.HeaderMsgID)]++
			n++
			got++
		}
		if batch.Error() != nil {
			return nil, batch.Error()
		}
		if got == 0 {
			time.Sleep(50 * time.Millisecond)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	return ids, nil
}

// verify checks the end state and the mutation bounds; it returns the
// number of people compared and the total successful mutations.
func verify(t *testing.T, r *rig, sc *scenario) (people, mutations int, maxRatio string) {
	t.Helper()
	ms, err := r.members()
	if err != nil {
		t.Fatal(err)
	}
	byEmail := map[string]sentrytest.MemberView{}
	for _, m := range ms {
		byEmail[strings.ToLower(m.Email)] = m
	}
	for _, e := range []string{ownerEmail, serviceEmail} {
		if _, ok := byEmail[e]; !ok {
			t.Errorf("%s is gone from Sentry", e)
		}
	}
	mismatches := 0
	var suspects []*person
	for _, p := range sc.People {
		want := sc.final(p)
		var got *access
		if m, ok := byEmail[strings.ToLower(p.Email)]; ok {
			got = &access{OrgRole: m.OrgRole, Teams: map[string]string{}}
			for slug, stored := range m.Teams {
				got.Teams[slug] = policy.EffectiveTeamRole(m.OrgRole, stored)
			}
			if m.Pending {
				// Real Sentry keeps no team roles on an invite: they are set by
				// the first convergence after acceptance (internal/app's
				// acceptance test), so an invite is compared by its team set.
				got, want = inviteView(got), inviteView(want)
			}
		}
		if got.String() != want.String() {
			mismatches++
			suspects = append(suspects, p)
			if mismatches <= 20 {
				t.Errorf("%s (%s): Sentry has %s, the history says %s", p.Email, p.ID, got, want)
				logHistory(t, p)
			}
		}
	}
	if mismatches > 0 {
		t.Errorf("%d of %d people differ from the desired state", mismatches, len(sc.People))
	}
	st, err := r.stats()
	if err != nil {
		t.Fatal(err)
	}
	over := 0
	worst := 0.0
	for _, p := range sc.People {
		b := sc.bounds(p)
		for kind, byPerson := range st.Mutations {
			n := byPerson[strings.ToLower(p.Email)]
			if n == 0 {
				n = byPerson[p.Email]
			}
			if n == 0 {
				continue
			}
			mutations += n
			if n > b[kind] {
				over++
				if !slices.Contains(suspects, p) {
					suspects = append(suspects, p)
				}
				if over <= 20 {
					t.Errorf("%s: %d successful %s, the history implies at most %d", p.Email, n, kind, b[kind])
					logHistory(t, p)
				}
			}
			if b[kind] > 0 {
				if ratio := float64(n) / float64(b[kind]); ratio > worst {
					worst = ratio
				}
			}
		}
	}
	for kind, byPerson := range st.Mutations {
		for _, e := range []string{ownerEmail, serviceEmail} {
			if byPerson[e] > 0 {
				t.Errorf("%s: %d %s mutations; it must never be touched", e, byPerson[e], kind)
			}
		}
	}
	if over > 0 {
		t.Errorf("%d (person, kind) pairs exceed the mutations their history implies", over)
	}
	if len(suspects) > 0 {
		explain(t, r, suspects)
	}
	return len(sc.People), mutations, fmt.Sprintf("%.2f", worst)
}

// inviteView is a with every team role replaced by "invited".
func inviteView(a *access) *access {
	if a == nil {
		return nil
	}
	v := &access{OrgRole: a.OrgRole, Teams: map[string]string{}}
	for slug := range a.Teams {
		v.Teams[slug] = "invited"
	}
	return v
}

// explain logs, for a few people whose end state or mutations are wrong,
// the sandbox's mutating requests about them and the workers' log lines.
func explain(t *testing.T, r *rig, people []*person) {
	t.Helper()
	audit := []sentrytest.AuditEntry{}
	_ = r.sandboxJSON(http.MethodGet, "/_sandbox/audit-log", nil, &audit)
	reqs, _ := r.requestLog()
	for _, p := range people[:min(len(people), 4)] {
		ids := map[string]bool{}
		for _, a := range audit {
			if e, _ := a.Data["email"].(string); strings.EqualFold(e, p.Email) {
				ids[a.TargetID] = true
			}
		}
		t.Logf("---- %s (%s), member ids %v", p.Email, p.ID, slices.Sorted(maps.Keys(ids)))
		for _, q := range reqs {
			about := strings.Contains(q.Path, p.Email) || strings.Contains(q.Path, url.QueryEscape(p.Email))
			for id := range ids {
				about = about || strings.Contains(q.Path, "/members/"+id+"/") || strings.HasSuffix(q.Path, "/Users/"+id)
			}
			if about {
				t.Logf("    sandbox %s %-6s %s → %d (%.3fs)", q.Time.Format("15:04:05.000"), q.Method, q.Path, q.Status, q.Seconds)
			}
		}
		for _, w := range r.workers {
			b, _ := os.ReadFile(w.log)
			for _, line := range strings.Split(string(b), "\n") {
				if !strings.Contains(line, "\"id:"+p.ID+"\"") {
					continue
				}
				var d map[string]any
				if json.Unmarshal([]byte(line), &d) != nil {
					continue
				}
				ev, _ := d["event_id"].(string)
				if len(ev) > 8 {
					ev = ev[len(ev)-8:]
				}
				t.Logf("    %s %s %s ev=%s seq=%v outcome=%v steps=%v applied=%v stored=%v err=%v", w.name, d["time"], d["msg"], ev, d["seq"],
					d["outcome"], d["steps"], d["applied"], d["stored_event"], d["err"])
			}
		}
	}
}

var logMu sync.Mutex

func logHistory(t *testing.T, p *person) {
	logMu.Lock()
	defer logMu.Unlock()
	if p.Seeded {
		t.Logf("    seed: %s", seedAccess(p.Seed))
	}
	for _, ev := range p.History {
		t.Logf("    %s %-7s %-10s dept=%-8s groups=%v id=%s", ev.OccurredAt.Format("15:04:05.000"), ev.Type, ev.Person.Status,
			ev.Person.Department, ev.Person.Groups, ev.ID)
	}
}
