package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/embednats"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
)

// benchResult is `jml bench reconcile --json`.
type benchResult struct {
	Seconds            float64        `json:"seconds"`
	APICalls           int            `json:"api_calls"`
	MinAPICalls        int            `json:"min_api_calls"`
	Ratio              float64        `json:"api_calls_ratio"`
	PeakHeapMiB        float64        `json:"peak_heap_mib"`
	ProjectedSeconds   float64        `json:"projected_seconds_at_sentry_limits"`
	Members            int            `json:"members"`
	Teams              int            `json:"teams"`
	Drift              float64        `json:"drift"`
	Drifted            int            `json:"drifted"`
	Changes            int            `json:"changes"` // successful mutations (sandbox count)
	Status             string         `json:"status"`
	Counts             map[string]int `json:"counts"`
	CallsByPattern     map[string]int `json:"calls_by_pattern"`
	ReconcileMinimumAt string         `json:"min_api_calls_basis"`
}

// cmdBenchReconcile: jml bench reconcile --members N --teams N [--drift F] [--json].
func cmdBenchReconcileLeaf(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	members := fs.Int("members", 100000, "generated members")
	teams := fs.Int("teams", 2000, "generated teams")
	drift := fs.Float64("drift", 0, "share of people made leavers in the directory (e.g. 0.01)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	concurrency := fs.Int("concurrency", 16, "reconciler concurrency")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	res, err := benchReconcile(ctx, *members, *teams, *drift, *concurrency, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "reconcile %d members, %d teams, drift %.2g: %.1fs, %d API calls (minimum %d, ×%.3f), peak heap %.0f MiB, %.0fs at Sentry's limits, %d changes\n",
		res.Members, res.Teams, res.Drift, res.Seconds, res.APICalls, res.MinAPICalls, res.Ratio, res.PeakHeapMiB, res.ProjectedSeconds, res.Changes)
	return nil
}

func benchReconcile(ctx context.Context, nMembers, nTeams int, drift float64, concurrency int, logs io.Writer) (*benchResult, error) {
	dir, err := os.MkdirTemp("", "jml-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	seed := map[string]any{
		"organization":  map[string]any{"slug": "acme", "name": "Acme (bench)", "saml": true, "scim": true},
		"teams":         []any{},
		"members":       []any{map[string]any{"email": "jml-bot@acme.test", "orgRole": "manager"}},
		"orgAuthTokens": []any{map[string]any{"name": "ci-release-upload", "createdBy": "jml-bot@acme.test"}},
		"generate": map[string]any{"members": nMembers, "teams": nTeams, "teamsPerMember": 2, "pendingEvery": 200,
			"idpEvery": 10, "teamAdminEvery": 20, "idpTeamsEvery": 100},
	}
	seedFile := filepath.Join(dir, "seed.json")
	b, _ := json.Marshal(seed)
	if err := os.WriteFile(seedFile, b, 0o600); err != nil {
		return nil, err
	}
	// The sandbox runs in its own process.
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(sctx, exe, "sandbox", "-addr", "127.0.0.1:0", "-seed", seedFile, "-rate-limit", "-1")
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logs, "starting the sandbox (%d members, %d teams)…\n", nMembers, nTeams)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { stop(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	base := ""
	for sc.Scan() {
		if _, after, ok := strings.Cut(sc.Text(), "listening on "); ok {
			base = strings.Fields(after)[0]
			break
		}
	}
	if base == "" {
		return nil, errors.New("bench: the sandbox did not start")
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()

	hc := &http.Client{Timeout: 5 * time.Minute}
	var views []sentrytest.MemberView
	if err := getJSON(ctx, hc, base+"/_sandbox/members", &views); err != nil {
		return nil, err
	}
	emails := make([]string, 0, len(views))
	for _, v := range views {
		emails = append(emails, v.Email)
	}
	views = nil
	step := 0
	if drift > 0 {
		step = int(1 / drift)
	}
	dirSrc := &benchDirectory{emails: emails, terminateEvery: step, self: "jml-bot@acme.test"}

	// The drift is applied through the real safety gate (on an in-process
	// NATS) under real leases, as an approved plan: its removals are not
	// counted in the event brakes' window.
	ns, err := embednats.Start(embednats.Options{StoreDir: filepath.Join(os.TempDir(), fmt.Sprintf("jml-bench-%d", os.Getpid()))})
	if err != nil {
		return nil, err
	}
	defer func() {
		ns.Shutdown()
		_ = os.RemoveAll(filepath.Join(os.TempDir(), fmt.Sprintf("jml-bench-%d", os.Getpid())))
	}()
	nc, err := ns.Connect("jml-bench")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	gate, err := app.NewSafety(ctx, app.SafetyOptions{NC: nc, Owner: "bench-reconcile", Role: "bench"})
	if err != nil {
		return nil, err
	}
	gctx, stopGate := context.WithCancel(ctx)
	gateDone := make(chan struct{})
	go func() { defer close(gateDone); _ = gate.Run(gctx) }()
	defer func() { stopGate(); <-gateDone }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, _, ok := gate.View(); ok {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("bench: the safety gate did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	client, err := sentry.New(sentry.Config{BaseURL: base, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: gate,
		HTTPClient: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		Budget:     sentry.NewLocalBudget(sentry.LocalBudgetOptions{DefaultLimit: -1, DefaultConcurrency: -1})})
	if err != nil {
		return nil, err
	}
	me, err := client.Me(ctx)
	if err != nil {
		return nil, err
	}
	pol := policy.Default()
	pol.Reconcile.MaxRemovals, pol.Reconcile.MaxRemovalRatio = 1<<30, 1 // the bench applies its drift
	tokens := converge.NewTokenIndex()
	conv, err := converge.New(converge.Options{Sentry: client, SelfMemberID: me.ID, SelfEmail: me.Email, SelfRole: me.OrgRole,
		Policy: func() policy.Policy { return pol }, Tokens: tokens, Target: state.TargetSandbox})
	if err != nil {
		return nil, err
	}
	rec, err := reconcile.New(reconcile.Options{Sentry: client, Converger: conv, Directory: dirSrc, Runs: &memRuns{runs: map[string]state.ReconcileRun{}},
		Tokens: tokens, Policy: func() policy.Policy { return pol }, SelfMemberID: me.ID, SelfEmail: me.Email, Leases: memstate.New(nil), Owner: "bench",
		Concurrency: concurrency, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return nil, err
	}
	var before sentrytest.Stats
	if err := post(ctx, hc, base+"/_sandbox/stats/reset"); err != nil {
		return nil, err
	}
	if err := getJSON(ctx, hc, base+"/_sandbox/stats", &before); err != nil {
		return nil, err
	}
	runtime.GC()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	tty := newBar(logs)
	sum, err := rec.Run(safety.WithApproved(ctx, "bench"), reconcile.RunOptions{Trigger: "bench", Progress: func(p reconcile.Progress) { tty.draw(p.Done, p.Total) }})
	secs := time.Since(start).Seconds()
	close(done)
	wg.Wait()
	tty.end()
	if err != nil {
		return nil, err
	}
	var after sentrytest.Stats
	if err := getJSON(ctx, hc, base+"/_sandbox/stats", &after); err != nil {
		return nil, err
	}
	changes := 0
	for _, by := range after.Mutations {
		for _, n := range by {
			changes += n
		}
	}
	res := &benchResult{Seconds: secs, APICalls: after.TotalRequests - before.TotalRequests, PeakHeapMiB: float64(peak.Load()) / (1 << 20),
		Members: sum.Members, Teams: nTeams, Drift: drift, Drifted: dirSrc.drifted(), Changes: changes, Status: sum.Status,
		Counts:         map[string]int{"remove": sum.Counts.Remove, "invite": sum.Counts.Invite, "update": sum.Counts.Update, "report": sum.Counts.Report},
		CallsByPattern: map[string]int{}, ReconcileMinimumAt: "sandbox reconcile_minimum_calls before the run + one per change"}
	res.MinAPICalls = before.ReconcileMinimumCalls + changes
	if res.MinAPICalls > 0 {
		res.Ratio = float64(res.APICalls) / float64(res.MinAPICalls)
	}
	for _, r := range after.Requests {
		res.CallsByPattern[r.Method+" "+r.Pattern] += r.Count
	}
	res.ProjectedSeconds = projectSeconds(res.CallsByPattern)
	return res, nil
}

// projectSeconds estimates the run at Sentry's default limit (40 requests per
// second per URL pattern and method): the member list runs alongside the team
// list and team-member pages; invite details and changes follow.
func projectSeconds(calls map[string]int) float64 {
	const limit = 40.0
	members := float64(calls["GET /api/0/organizations/{organization_id_or_slug}/members/"])
	teams := float64(calls["GET /api/0/organizations/{organization_id_or_slug}/teams/"]) +
		float64(calls["GET /api/0/teams/{organization_id_or_slug}/{team_id_or_slug}/members/"])
	read := max(members, teams) / limit
	detail := float64(calls["GET /api/0/organizations/{organization_id_or_slug}/members/{member_id}/"]) / limit
	var worst float64
	for k, n := range calls {
		if !strings.HasPrefix(k, "GET ") {
			worst = max(worst, float64(n)/limit)
		}
	}
	return read + detail + worst
}

func getJSON(ctx context.Context, hc *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func post(ctx context.Context, hc *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// benchDirectory streams one active person per member (every Nth a leaver),
// generated on the fly: the directory costs the reconciler no memory.
type benchDirectory struct {
	emails         []string
	terminateEvery int
	self           string
}

func (d *benchDirectory) person(i int) state.PersonRecord {
	e := d.emails[i]
	st := events.Active
	if d.terminateEvery > 0 && i%d.terminateEvery == d.terminateEvery-1 && !strings.EqualFold(e, d.self) {
		st = events.Terminated
	}
	key := "email:" + strings.ToLower(e)
	return state.PersonRecord{Key: key, Person: events.Person{Email: e, Status: st, Groups: []string{}}}
}

func (d *benchDirectory) drifted() int {
	n := 0
	for i := range d.emails {
		if d.person(i).Person.Status == events.Terminated {
			n++
		}
	}
	return n
}

func (d *benchDirectory) Get(_ context.Context, key string) (state.PersonRecord, error) {
	for i, e := range d.emails {
		if "email:"+strings.ToLower(e) == key {
			return d.person(i), nil
		}
	}
	return state.PersonRecord{}, state.ErrNotFound
}

func (d *benchDirectory) List(context.Context) iter.Seq2[state.PersonRecord, error] {
	return func(yield func(state.PersonRecord, error) bool) {
		for i := range d.emails {
			if !yield(d.person(i), nil) {
				return
			}
		}
	}
}

func (d *benchDirectory) Resolve(_ context.Context, _, id string) (string, error) {
	return "email:" + id, nil
}

// memRuns is an in-memory state.Runs for the bench.
type memRuns struct {
	mu   sync.Mutex
	runs map[string]state.ReconcileRun
}

func (m *memRuns) Put(_ context.Context, r state.ReconcileRun) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.Plan = nil // the bench does not keep plans
	m.runs[r.ID] = r
	return nil
}

func (m *memRuns) Get(_ context.Context, id string) (state.ReconcileRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.runs[id]
	if !ok {
		return r, state.ErrNotFound
	}
	return r, nil
}

func (m *memRuns) List(context.Context) iter.Seq2[state.ReconcileRun, error] {
	return func(func(state.ReconcileRun, error) bool) {}
}

func (m *memRuns) Approve(context.Context, string, string, time.Time) (state.ReconcileRun, error) {
	return state.ReconcileRun{}, state.ErrRunNotHalted
}
