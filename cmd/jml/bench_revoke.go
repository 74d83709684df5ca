package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// revokeResult is `jml bench revoke --json`.
type revokeResult struct {
	Leavers                     int     `json:"leavers"`
	SequentialLeavers           int     `json:"sequential_leavers"`
	OverheadP50ms               float64 `json:"overhead_p50_ms"`
	OverheadP99ms               float64 `json:"overhead_p99_ms"`
	EndToEndP50ms               float64 `json:"end_to_end_p50_ms"`
	EndToEndP99ms               float64 `json:"end_to_end_p99_ms"`
	BurstSeconds                float64 `json:"burst_seconds"`
	BurstBoundSeconds           float64 `json:"burst_bound_seconds"`
	BusiestPattern              string  `json:"busiest_pattern"`
	RateLimited                 int     `json:"rate_limited"`
	RateLimitedAfterFirstWindow int     `json:"rate_limited_after_first_window"`
	APICallsPerLeaver           float64 `json:"api_calls_per_leaver"`
	TokensRevoked               int     `json:"tokens_revoked"`
	CPUMicrosPerEvent           float64 `json:"cpu_us_per_event"`
	FrontCPUMicrosPerEvent      float64 `json:"receiver_nats_cpu_us_per_event"`
	WorkerIdleCPUMsPerSecond    float64 `json:"worker_idle_cpu_ms_per_s"`
	SandboxLatencyMs            float64 `json:"sandbox_latency_ms"`
	SandboxRateLimit            int     `json:"sandbox_rate_limit"`
	SandboxCPUMicrosPerEvent    float64 `json:"sandbox_cpu_us_per_event"`
	CPUIncludes                 string  `json:"cpu_includes"`
	// The floor, same run: a bare net/http client with the worker's
	// transport settings and nothing else makes the same two calls per
	// leaver (member detail, removal) against the same sandbox process,
	// paced under the limit so it meets no 429.
	BareClientCPUMicrosPerEvent float64 `json:"bare_client_cpu_us_per_event"`
	BareClientCallsPerEvent     float64 `json:"bare_client_calls_per_event"`
	BareClientRateLimited       int     `json:"bare_client_rate_limited"`
	// CPURatio is cpu_us_per_event ÷ bare_client_cpu_us_per_event.
	CPURatio float64 `json:"cpu_ratio"`
	// With --otlp: spans and metric exports the local OTLP receiver got from
	// the bench process (receiver) and the worker process.
	otlpResult
}

func cmdBenchRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	seq := fs.Int("sequential", 100, "leavers sent one at a time")
	burst := fs.Int("leavers", 200, "leavers in the burst")
	latency := fs.Duration("latency", 20*time.Millisecond, "sandbox latency per request")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the bench process (receiver, NATS, senders) during the burst to this file")
	workerProfile := fs.String("worker-cpuprofile", "", "write a CPU profile of the worker process (its whole run) to this file")
	otlp := fs.Bool("otlp", false, "export traces and metrics of the receiver and the worker over OTLP/HTTP to a local receiver (counted in the result)")
	redisURL := fs.String("redis", "redis://127.0.0.1:6379", "Redis for the worker process (keys under a random prefix)")
	bareOnly := fs.String("bare-only", "", "internal: run only the bare-client baseline against this sandbox URL (token in JML_SENTRY_TOKEN), from member --bare-from, --leavers of them, and print its result; the bench runs it as its own process")
	bareFrom := fs.Int("bare-from", 0, "internal: with --bare-only, the first member number")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *bareOnly != "" {
		r, err := benchBareClient(ctx, *bareOnly, os.Getenv("JML_SENTRY_TOKEN"), *bareFrom, *burst)
		if err != nil {
			return err
		}
		return printJSON(stdout, r)
	}
	res, err := benchRevoke(ctx, revokeOptions{seq: *seq, burst: *burst, latency: *latency, redisURL: *redisURL, profile: *cpuprofile, workerProfile: *workerProfile, otlp: *otlp}, stderr)
	if err != nil {
		return err
	}
	_ = *asJSON // the result is always one JSON object; --json is accepted for symmetry with bench ingest
	return printJSON(stdout, res)
}

type revokeOptions struct {
	seq, burst int
	latency    time.Duration
	redisURL   string
	profile    string // CPU profile file of the bench process ("" = none)
	// workerProfile is the worker process's CPU profile file ("" = none).
	workerProfile string
	otlp          bool
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func benchRevoke(ctx context.Context, o revokeOptions, progress io.Writer) (*revokeResult, error) {
	nSeq, nBurst, latency, profile := o.seq, o.burst, o.latency, o.profile
	dir, err := os.MkdirTemp("", "jml-bench-revoke-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The sandbox in its own process: demo org plus generated members, each
	// burst leaver owning an org token (policy: revoke).
	seed := sentrytest.DemoSeed()
	// Members 1…nSeq+nBurst are the daemon's leavers; the bare client's
	// follow after a gap of 50.
	bareFrom := nSeq + nBurst + 51
	seed.Generate = &sentrytest.SeedGenerate{Members: bareFrom + nBurst, Teams: 20}
	const tokensOwned = 10
	for i := range tokensOwned {
		seed.OrgAuthTokens = append(seed.OrgAuthTokens, sentrytest.SeedOrgAuthToken{Name: fmt.Sprintf("ci-%d", i), CreatedBy: fmt.Sprintf("user%06d@acme.test", nSeq+1+i)})
	}
	seedFile := filepath.Join(dir, "seed.json")
	b, err := json.Marshal(seed)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(seedFile, b, 0o600); err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	token := "sntryu_" + strings.Repeat("ab", 32)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	sbCmd := exec.CommandContext(ctx, self, "sandbox", "-addr", addr, "-token", token, "-seed", seedFile, "-latency", latency.String())
	sbOut, _ := sbCmd.StdoutPipe()
	sbCmd.Stderr = progress
	if err := sbCmd.Start(); err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	defer func() { _ = sbCmd.Process.Signal(os.Interrupt); _ = sbCmd.Wait() }()
	if line, err := bufio.NewReader(sbOut).ReadString('\n'); err != nil || !strings.Contains(line, "listening") {
		return nil, fmt.Errorf("sandbox did not start: %q %v", line, err)
	}
	sbURL := "http://" + addr
	hc := &http.Client{Timeout: 10 * time.Second}
	getJSON := func(path string, v any) (int, error) {
		resp, err := hc.Get(sbURL + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if v != nil && resp.StatusCode == http.StatusOK {
			return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}

	// The daemon as deployed: this process runs the embedded NATS server and
	// the receiver; the worker is its own process (`jml worker`, the same code
	// as cmd/worker) with Redis for coordination, so its CPU is measured alone.
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", DataDir: dir, LogLevel: "error", MaxBodyBytes: 1 << 20,
		StreamReplicas: 1, SentryURL: sbURL, SentryOrg: "acme", SentryToken: token}
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte("leaver: {org_tokens: revoke}\nbrakes: {max_event_removals_per_minute: 100000}\n"), 0o600); err != nil {
		return nil, err
	}
	cfg.PolicyFile = polFile
	ro := runOptions{sentryConfigured: true, noWorker: true, stdout: io.Discard, logs: io.Discard}
	var otlpEnv []string
	var sink *otlpSink
	if o.otlp {
		if sink, err = startOTLPSink(); err != nil {
			return nil, err
		}
		defer sink.close()
		sink.setEnv()
		otlpEnv = sink.env()
		ro.getenv = os.Getenv // sink.setEnv set the OTEL_* variables of this process
	}
	sys, err := startAll(ctx, cfg, ro)
	if err != nil {
		return nil, err
	}
	sysClosed := false
	defer func() {
		if !sysClosed {
			sys.Close()
		}
	}()
	wk, err := startBenchWorker(ctx, self, dir, append([]string{
		"JML_NATS_URL=" + sys.ns.ClientURL(), "JML_REDIS_URL=" + o.redisURL, "JML_REDIS_PREFIX=jmlbench:" + randomID() + ":",
		"JML_SENTRY_URL=" + sbURL, "JML_SENTRY_ORG=acme", "JML_SENTRY_TOKEN=" + token, "JML_POLICY_FILE=" + polFile,
		"JML_ADMIN_ADDR=127.0.0.1:0", "JML_DATA_DIR=" + dir, "JML_LOG_LEVEL=info", "JML_STREAM_REPLICAS=1",
		"JML_CPUPROFILE=" + o.workerProfile,
	}, otlpEnv...))
	if err != nil {
		return nil, err
	}
	defer wk.stop()
	secret, err := genericSecret(cfg)
	if err != nil {
		return nil, err
	}
	key, _ := signature.DecodeStandardSecret(secret)
	hookURL := "http://" + sys.httpAddr + "/hooks/generic"
	send := func(c *http.Client, id, email string) error {
		body := fmt.Appendf(nil, `{"type":"leaver","occurred_at":%q,"person":{"email":%q,"status":"terminated"}}`, time.Now().UTC().Format(time.RFC3339Nano), email)
		now := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hookURL, strings.NewReader(string(body)))
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", signature.Sign(key, id, time.Unix(now.Unix(), 0), body))
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("receiver answered %d", resp.StatusCode)
		}
		return nil
	}
	gone := func(email string) bool {
		code, err := getJSON("/_sandbox/members?email="+email, nil)
		return err == nil && code == http.StatusNotFound
	}
	var reqLog []sentrytest.LoggedRequest
	res := &revokeResult{Leavers: nBurst, SequentialLeavers: nSeq, SandboxLatencyMs: float64(latency.Microseconds()) / 1000, SandboxRateLimit: 40,
		CPUIncludes: "the worker process alone (jml worker, as cmd/worker); receiver_nats_cpu_us_per_event is the bench process: receiver, embedded NATS server, HTTP senders; the sandbox is its own process"}

	// Phase 1: leavers one at a time.
	fmt.Fprintf(progress, "bench: %d leavers one at a time…\n", nSeq)
	var overhead, e2e []time.Duration
	for i := 1; i <= nSeq; i++ {
		email := fmt.Sprintf("user%06d@acme.test", i)
		mark := time.Now()
		if err := send(hc, fmt.Sprintf("msg_seq_%d", i), email); err != nil {
			return nil, err
		}
		for !gone(email) {
			if time.Since(mark) > 30*time.Second {
				return nil, fmt.Errorf("%s was not removed within 30 s", email)
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := getJSON("/_sandbox/requests", &reqLog); err != nil {
			return nil, err
		}
		var serving time.Duration
		var doneAt time.Time
		for _, r := range reqLog {
			if r.Time.Before(mark) || r.Caller == "" {
				continue
			}
			if strings.HasPrefix(r.Pattern, "/api/0/") {
				serving += time.Duration(r.Seconds * float64(time.Second))
			}
			if r.Method == http.MethodDelete && strings.Contains(r.Pattern, "/members/{member_id}/") {
				doneAt = r.Time.Add(time.Duration(r.Seconds * float64(time.Second)))
			}
		}
		if doneAt.IsZero() {
			return nil, fmt.Errorf("no DELETE logged for %s", email)
		}
		e2e = append(e2e, doneAt.Sub(mark))
		overhead = append(overhead, doneAt.Sub(mark)-serving)
	}
	res.OverheadP50ms, res.OverheadP99ms = pct(overhead, 50), pct(overhead, 99)
	res.EndToEndP50ms, res.EndToEndP99ms = pct(e2e, 50), pct(e2e, 99)

	// The worker's CPU with nothing to do (scheduler, heartbeats, budget), so
	// the per-event figure can be read against it.
	idle0 := procCPU(wk.cmd.Process.Pid)
	time.Sleep(3 * time.Second)
	res.WorkerIdleCPUMsPerSecond = float64(procCPU(wk.cmd.Process.Pid)-idle0) / 3000

	// Phase 2: a burst, with a warm member index.
	fmt.Fprintf(progress, "bench: a burst of %d leavers…\n", nBurst)
	var statsBefore sentrytest.Stats
	if _, err := getJSON("/_sandbox/stats", &statsBefore); err != nil {
		return nil, err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	sbCPU0 := procCPU(sbCmd.Process.Pid)
	wkCPU0 := procCPU(wk.cmd.Process.Pid)
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, nBurst)
	jobs := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for i := range jobs {
				if err := send(c, fmt.Sprintf("msg_burst_%d", i), fmt.Sprintf("user%06d@acme.test", i)); err != nil {
					errc <- err
				}
			}
		}()
	}
	for i := nSeq + 1; i <= nSeq+nBurst; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	// Done when the sandbox has removed every burst leaver and revoked their
	// tokens (one small stats read every 20 ms, so polling costs little CPU).
	for {
		var st sentrytest.Stats
		if _, err := getJSON("/_sandbox/stats", &st); err != nil {
			return nil, err
		}
		removed := 0
		for email, n := range st.Mutations["member.remove"] {
			if strings.HasPrefix(email, "user") && n > 0 {
				removed++
			}
		}
		revoked := len(st.Mutations["org-auth-token.remove"])
		if removed >= nSeq+nBurst && revoked >= tokensOwned {
			res.TokensRevoked = revoked
			break
		}
		if time.Since(start) > 5*time.Minute {
			return nil, fmt.Errorf("burst not finished after 5 minutes: %d removed, %d tokens revoked", removed-nSeq, revoked)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	res.CPUMicrosPerEvent = float64(procCPU(wk.cmd.Process.Pid)-wkCPU0) / float64(nBurst)
	res.FrontCPUMicrosPerEvent = float64(cpuMicros(ru1)-cpuMicros(ru0)) / float64(nBurst)
	res.SandboxCPUMicrosPerEvent = float64(procCPU(sbCmd.Process.Pid)-sbCPU0) / float64(nBurst)

	var statsAfter sentrytest.Stats
	if _, err := getJSON("/_sandbox/stats", &statsAfter); err != nil {
		return nil, err
	}
	if _, err := getJSON("/_sandbox/requests", &reqLog); err != nil {
		return nil, err
	}
	var last time.Time
	for _, r := range reqLog {
		if !r.Time.Before(start) && strings.HasPrefix(r.Pattern, "/api/0/") && r.Status < 300 && r.Method == http.MethodDelete {
			if end := r.Time.Add(time.Duration(r.Seconds * float64(time.Second))); end.After(last) {
				last = end
			}
		}
	}
	perKey := map[string]int{}
	calls := 0
	for _, r := range reqLog {
		if r.Time.Before(start) || r.Time.After(last) || !strings.HasPrefix(r.Pattern, "/api/0/") {
			continue
		}
		calls++
		perKey[r.Method+" "+r.Pattern]++
		if r.Status == http.StatusTooManyRequests && r.Time.After(start.Add(time.Second)) {
			res.RateLimitedAfterFirstWindow++
		}
	}
	busiest := 0
	for k, n := range perKey {
		if n > busiest {
			busiest, res.BusiestPattern = n, k
		}
	}
	res.BurstSeconds = last.Sub(start).Seconds()
	res.BurstBoundSeconds = float64(busiest) / 40
	res.RateLimited = statsAfter.RateLimited - statsBefore.RateLimited
	res.APICallsPerLeaver = float64(calls) / float64(nBurst)

	// Phase 3: the floor — a bare client, same calls, same sandbox.
	fmt.Fprintf(progress, "bench: the bare-client baseline, %d leavers…\n", nBurst)
	bare, err := runBareClient(ctx, self, sbURL, token, bareFrom, nBurst)
	if err != nil {
		return nil, fmt.Errorf("bare-client baseline: %w", err)
	}
	res.BareClientCPUMicrosPerEvent, res.BareClientCallsPerEvent, res.BareClientRateLimited = bare.CPUPerEvent, bare.CallsPerEvent, bare.RateLimited
	if bare.CPUPerEvent > 0 {
		res.CPURatio = res.CPUMicrosPerEvent / bare.CPUPerEvent
	}
	if sink != nil {
		// Both processes flush their exporters on shutdown; then count.
		wk.stop()
		sys.Close()
		sysClosed = true
		res.otlpResult = sink.result()
	}
	return res, nil
}

type bareResult struct {
	CPUPerEvent   float64 `json:"cpu_us_per_event"`
	CallsPerEvent float64 `json:"calls_per_event"`
	RateLimited   int     `json:"rate_limited"`
}

// runBareClient runs the bare-client baseline in its own process (`jml bench
// revoke --bare-only`), so its CPU is measured alone, like the worker's.
func runBareClient(ctx context.Context, self, sbURL, token string, from, n int) (*bareResult, error) {
	cmd := exec.CommandContext(ctx, self, "bench", "revoke", "-bare-only", sbURL, "-bare-from", strconv.Itoa(from), "-leavers", strconv.Itoa(n))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JML_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "JML_SENTRY_TOKEN="+token)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr.String())
	}
	var r bareResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("bare client result %q: %w", out, err)
	}
	return &r, nil
}

// bareRate is the bare client's pace, leavers per second: under the
// sandbox's 40 per (token, URL pattern, method) and fixed 1-second window,
// with room for latency jitter, so it meets no 429.
const bareRate = 35

// benchBareClient removes n members (user<from>… of the seed) the way the
// worker does — GET the member detail, then DELETE it — with plain net/http
// and the worker's transport settings (sentry.New's: keep-alive, 64 idle
// connections per host, the same timeouts), and no telemetry, stores, budget
// or gate. Member ids are looked up first, outside the measurement; the
// CPU is this process's during the phase (run it in a process of its own:
// runBareClient).
func benchBareClient(ctx context.Context, sbURL, token string, from, n int) (*bareResult, error) {
	ctl := &http.Client{Timeout: 10 * time.Second}
	ids := make([]string, n)
	for i := range n {
		resp, err := ctl.Get(fmt.Sprintf("%s/_sandbox/members?email=user%06d@acme.test", sbURL, from+i))
		if err != nil {
			return nil, err
		}
		var m sentrytest.MemberView
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if err != nil || m.ID == "" {
			return nil, fmt.Errorf("member user%06d: %v", from+i, err)
		}
		ids[i] = m.ID
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = 20 * time.Second
	defer t.CloseIdleConnections()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: t}
	call := func(method, url string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}

	// Start at a fresh window.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	var ru1, ru2 syscall.Rusage
	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		calls, r429 int
		firstErr    error
	)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	tick := time.NewTicker(time.Second / bareRate)
	for i := range n {
		if i > 0 {
			<-tick.C
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			u := fmt.Sprintf("%s/api/0/organizations/acme/members/%s/", sbURL, id)
			for _, m := range []string{http.MethodGet, http.MethodDelete} {
				code, err := call(m, u)
				mu.Lock()
				calls++
				if code == http.StatusTooManyRequests {
					r429++
				}
				if err == nil && code >= 300 {
					err = fmt.Errorf("%s %s: %d", m, u, code)
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}(ids[i])
	}
	tick.Stop()
	wg.Wait()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru2)
	if firstErr != nil {
		return nil, firstErr
	}
	return &bareResult{CPUPerEvent: float64(cpuMicros(ru2)-cpuMicros(ru1)) / float64(n), CallsPerEvent: float64(calls) / float64(n), RateLimited: r429}, nil
}

func cpuMicros(ru syscall.Rusage) int64 {
	return ru.Utime.Sec*1e6 + int64(ru.Utime.Usec) + ru.Stime.Sec*1e6 + int64(ru.Stime.Usec)
}

// procCPU reads a process's user+system CPU time in microseconds from /proc.
func procCPU(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * 1e6 / 100 // clock ticks (USER_HZ = 100)
}

// benchWorker is the worker process of `jml bench revoke`.
type benchWorker struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startBenchWorker starts `jml worker` with env (and no other JML_ variable of
// this process) and waits until its member and token indexes are warm, which
// it logs as "indexes warm".
func startBenchWorker(ctx context.Context, self, dir string, env []string) (*benchWorker, error) {
	cmd := exec.CommandContext(ctx, self, "worker")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JML_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	logs, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start jml worker: %w", err)
	}
	w := &benchWorker{cmd: cmd, done: make(chan struct{})}
	warm := make(chan struct{})
	var tail []string // the last lines, for the error when it does not start
	var tailMu sync.Mutex
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(logs)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			tailMu.Lock()
			if tail = append(tail, line); len(tail) > 20 {
				tail = tail[1:]
			}
			tailMu.Unlock()
			if strings.Contains(line, `"msg":"indexes warm"`) {
				once.Do(func() { close(warm) })
			}
		}
	}()
	select {
	case <-warm:
		return w, nil
	case <-w.done:
		err = errors.New("jml worker exited before its indexes were warm")
	case <-time.After(30 * time.Second):
		err = errors.New("jml worker: member index did not warm up within 30 s")
	}
	w.stop()
	tailMu.Lock()
	defer tailMu.Unlock()
	return nil, fmt.Errorf("%w (is Redis reachable? see -redis)\n%s", err, strings.Join(tail, "\n"))
}

func (w *benchWorker) stop() {
	_ = w.cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.done:
	case <-time.After(25 * time.Second):
		_ = w.cmd.Process.Kill()
	}
	_ = w.cmd.Wait()
}
