package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/embednats"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/signature"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// ingestRound is one round of the three saturated phases.
type ingestRound struct {
	BaselineRPS    float64 `json:"baseline_rps"`
	HTTPFloorRPS   float64 `json:"http_floor_rps"`
	RPS            float64 `json:"rps"`
	FloorRatio     float64 `json:"floor_ratio"`
	BaselineCPUus  float64 `json:"baseline_cpu_us_per_msg"`
	HTTPFloorCPUus float64 `json:"http_floor_cpu_us_per_req"`
	CPUus          float64 `json:"cpu_us_per_event"`
	CPUFloorRatio  float64 `json:"cpu_floor_ratio"`
}

// ingestResult is `jml bench ingest --json`.
type ingestResult struct {
	BaselineRPS     float64 `json:"baseline_rps"`
	BaselineClients int     `json:"baseline_clients"`
	SizeBytes       int     `json:"size_bytes"`
	RPS             float64 `json:"rps"`
	Ratio           float64 `json:"ratio"`
	// HTTPFloorRPS is the same senders against a bare net/http handler that
	// reads the body and answers 202 (same run): the HTTP part of the floor.
	HTTPFloorRPS float64 `json:"http_floor_rps"`
	// FloorRatio is rps ÷ (1 / (1/http_floor_rps + 1/baseline_rps)): the
	// receiver against doing one bare HTTP exchange and one bare JetStream
	// publish per event, back to back.
	FloorRatio float64 `json:"floor_ratio"`
	// The process's CPU (user + system, getrusage) per message of each
	// saturated phase, senders, NATS server and handler included: less
	// sensitive than the rates to what else the machine runs meanwhile.
	BaselineCPUus  float64 `json:"baseline_cpu_us_per_msg"`
	HTTPFloorCPUus float64 `json:"http_floor_cpu_us_per_req"`
	CPUus          float64 `json:"cpu_us_per_event"`
	// CPUFloorRatio is (baseline + HTTP floor CPU per message) ÷ the
	// receiver phase's CPU per event: floor_ratio in CPU instead of rates.
	CPUFloorRatio float64 `json:"cpu_floor_ratio"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	P99msAt1000   float64 `json:"p99_ms_at_1000_rps"`
	P50msAt1000   float64 `json:"p50_ms_at_1000_rps"`
	Paced         int     `json:"paced_events"`
	Seconds       float64 `json:"seconds_per_phase"`
	// Rounds holds each round's saturated phases (baseline, HTTP floor,
	// receiver back to back); the figures above are the medians over the
	// rounds (rates, CPU and ratios each), so a load that changes during the
	// run moves one round, not the result.
	Rounds  []ingestRound `json:"rounds"`
	Errors  int64         `json:"errors"`
	Storage string        `json:"storage"`
	// With --otlp: what the local OTLP receiver got from the receiver's exporters.
	otlpResult
}

func cmdBenchIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	secs := fs.Float64("seconds", 3, "duration of each saturated phase")
	rounds := fs.Int("rounds", 3, "rounds of the saturated phases (baseline, HTTP floor, receiver), interleaved; the result is their median")
	clients := fs.Int("clients", 16, "concurrent publishers / senders")
	size := fs.Int("size", 512, "event size in bytes")
	rate := fs.Int("rate", 1000, "paced phase: events per second")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	profilePhase := fs.String("profile-phase", "all", "with --cpuprofile: profile the whole run (all) or only the first round's saturated receiver phase (receiver)")
	otlp := fs.Bool("otlp", false, "export the receiver's traces and metrics over OTLP/HTTP to a local receiver (counted in the result)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var sink *otlpSink
	if *otlp {
		var err error
		if sink, err = startOTLPSink(); err != nil {
			return err
		}
		defer sink.close()
		sink.setEnv()
	}
	if *rounds < 1 {
		return usageErrorf("--rounds %d: want at least 1", *rounds)
	}
	if *profilePhase != "all" && *profilePhase != "receiver" {
		return usageErrorf("--profile-phase %q: want all or receiver", *profilePhase)
	}
	// phase is called as each phase starts and once more at the end ("").
	phase := func(string) {}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		// A file holds one profile: with --profile-phase receiver it is the
		// first round's receiver phase.
		profiling, done := false, false
		phase = func(name string) {
			want := *profilePhase == "all" && name != "" || name == *profilePhase
			switch {
			case want && !profiling && !done:
				profiling = pprof.StartCPUProfile(f) == nil
			case !want && profiling:
				pprof.StopCPUProfile()
				profiling, done = false, true
			}
		}
		defer phase("")
	}
	res, err := benchIngest(ctx, ingestConfig{clients: *clients, size: *size, rate: *rate, rounds: *rounds,
		dur: time.Duration(*secs * float64(time.Second))}, sink, phase, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "medians of %d interleaved rounds of %.0f s phases\n", len(res.Rounds), res.Seconds)
	fmt.Fprintf(stdout, "baseline (bare JetStream sync publish, %d clients, %d B): %.0f msg/s\n", res.BaselineClients, res.SizeBytes, res.BaselineRPS)
	fmt.Fprintf(stdout, "receiver (signed webhooks → JetStream ack):       %.0f ev/s  ratio %.2f  p50 %.2f ms  p99 %.2f ms\n", res.RPS, res.Ratio, res.P50ms, res.P99ms)
	fmt.Fprintf(stdout, "HTTP floor (bare handler, same senders):           %.0f req/s  floor ratio %.2f\n", res.HTTPFloorRPS, res.FloorRatio)
	fmt.Fprintf(stdout, "CPU per event (whole process): baseline %.1f µs + HTTP floor %.1f µs vs receiver %.1f µs  cpu floor ratio %.2f\n", res.BaselineCPUus, res.HTTPFloorCPUus, res.CPUus, res.CPUFloorRatio)
	fmt.Fprintf(stdout, "paced at %d ev/s:                                  p50 %.2f ms  p99 %.2f ms\n", *rate, res.P50msAt1000, res.P99msAt1000)
	return nil
}

// ingestConfig sizes a run of the ingest bench.
type ingestConfig struct {
	clients, size, rate, rounds int
	dur                         time.Duration // per saturated phase
}

func benchIngest(ctx context.Context, cfg ingestConfig, sink *otlpSink, phase func(string), progress io.Writer) (*ingestResult, error) {
	clients, size, rate, dur := cfg.clients, cfg.size, cfg.rate, cfg.dur
	dir, err := os.MkdirTemp("", "jml-bench-ingest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns, err := embednats.Start(embednats.Options{StoreDir: dir, Listen: true})
	if err != nil {
		return nil, err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{}); err != nil {
		return nil, err
	}
	res := &ingestResult{BaselineClients: clients, SizeBytes: size, Seconds: dur.Seconds(), Storage: "file"}

	// The baseline: bare synchronous JetStream publishers, one connection
	// each, publishing the event's size.
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'x'
	}
	var wg sync.WaitGroup
	var bseq atomic.Int64
	baseline := func(dur time.Duration) (float64, float64) {
		var n atomic.Int64
		cpu0 := selfCPU()
		start := time.Now()
		deadline := start.Add(dur)
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pnc, err := nats.Connect(ns.ClientURL())
				if err != nil {
					return
				}
				defer pnc.Close()
				pjs, _ := jetstream.New(pnc)
				for time.Now().Before(deadline) {
					id := "b-" + strconv.FormatInt(bseq.Add(1), 10)
					if _, err := pjs.Publish(ctx, "jml.events.bench.baseline", payload, jetstream.WithMsgID(id)); err == nil {
						n.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return float64(n.Load()) / time.Since(start).Seconds(), perEvent(selfCPU()-cpu0, n.Load())
	}
	purge := func() {
		if st, err := js.Stream(ctx, events.StreamEvents); err == nil {
			_ = st.Purge(ctx)
		}
	}

	// The receiver, as deployed: one NATS connection, the generic source.
	secret := "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := signature.DecodeStandardSecret(secret)
	topts := telemetry.Options{ServiceName: "jml-bench"}
	if sink != nil {
		topts.TracesExporter, topts.MetricsExporter = "otlp", "otlp"
	}
	tel, err := telemetry.New(ctx, topts)
	if err != nil {
		return nil, err
	}
	rnc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	defer rnc.Close()
	h, err := app.NewReceiver(ctx, app.ReceiverOptions{NC: rnc, Specs: map[string]providers.Settings{"generic": {Secrets: []string{secret}}},
		Telemetry: tel, Logger: discardLogger()})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	var seq atomic.Int64
	addr := ln.Addr().String()
	// The senders are lean HTTP/1.1 keep-alive clients, like wrk: each writes
	// a signed request on its own connection and reads the answer in the same
	// goroutine. net/http's client hands every request between two goroutines
	// per connection, which on two cores would bill the load generator's
	// context switches to the receiver.
	send := func(c *rawClient) (time.Duration, error) {
		id := "msg_bench_" + strconv.FormatInt(seq.Add(1), 10)
		body := benchBody(id, size)
		now := time.Now()
		c.buf = c.buf[:0]
		c.buf = fmt.Appendf(c.buf, "POST /hooks/generic HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
			"webhook-id: %s\r\nwebhook-timestamp: %d\r\nwebhook-signature: %s\r\n\r\n",
			c.addr, len(body), id, now.Unix(), signature.Sign(key, id, time.Unix(now.Unix(), 0), body))
		c.buf = append(c.buf, body...)
		t0 := time.Now()
		code, err := c.do(c.buf)
		if err != nil {
			return 0, err
		}
		if code != http.StatusAccepted {
			return 0, fmt.Errorf("status %d", code)
		}
		return time.Since(t0), nil
	}
	newClient := func() *rawClient { return &rawClient{addr: addr} }

	// saturate runs clients senders against target for dur, one connection
	// each, and returns their latencies, the rate and the CPU per request.
	var mu sync.Mutex
	var errs atomic.Int64
	saturate := func(target string, dur time.Duration) ([]time.Duration, float64, float64) {
		var lat []time.Duration
		cpu0 := selfCPU()
		start := time.Now()
		deadline := start.Add(dur)
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &rawClient{addr: target}
				defer c.close()
				var mine []time.Duration
				for time.Now().Before(deadline) {
					d, err := send(c)
					if err != nil {
						errs.Add(1)
						continue
					}
					mine = append(mine, d)
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return lat, float64(len(lat)) / time.Since(start).Seconds(), perEvent(selfCPU()-cpu0, int64(len(lat)))
	}

	// The HTTP floor: the same senders against a bare handler that reads
	// the body and answers 202 (no signature, no JetStream).
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	floor := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _ = floor.Serve(fln) }()
	defer floor.Close()

	// A warm-up of each phase, not counted: the first connections, the
	// stream's first blocks and the receiver's first requests.
	fmt.Fprintf(progress, "bench: warming up…\n")
	warm := min(dur, time.Second)
	baseline(warm)
	saturate(fln.Addr().String(), warm)
	saturate(addr, warm)
	purge()

	// Rounds of baseline, HTTP floor and receiver, back to back: each
	// round's ratios compare phases a few seconds apart.
	var lat []time.Duration
	for i := range cfg.rounds {
		var rd ingestRound
		fmt.Fprintf(progress, "bench: round %d/%d: baseline, %d JetStream publishers for %s…\n", i+1, cfg.rounds, clients, dur)
		phase("baseline")
		rd.BaselineRPS, rd.BaselineCPUus = baseline(dur)
		purge()
		fmt.Fprintf(progress, "bench: round %d/%d: HTTP floor, %d senders for %s…\n", i+1, cfg.rounds, clients, dur)
		phase("floor")
		_, rd.HTTPFloorRPS, rd.HTTPFloorCPUus = saturate(fln.Addr().String(), dur)
		fmt.Fprintf(progress, "bench: round %d/%d: receiver, %d senders for %s…\n", i+1, cfg.rounds, clients, dur)
		phase("receiver")
		var l []time.Duration
		l, rd.RPS, rd.CPUus = saturate(addr, dur)
		lat = append(lat, l...)
		purge()
		if rd.CPUus > 0 {
			rd.CPUFloorRatio = (rd.BaselineCPUus + rd.HTTPFloorCPUus) / rd.CPUus
		}
		if rd.HTTPFloorRPS > 0 && rd.BaselineRPS > 0 {
			rd.FloorRatio = rd.RPS * (1/rd.HTTPFloorRPS + 1/rd.BaselineRPS)
		}
		res.Rounds = append(res.Rounds, rd)
	}
	med := func(f func(ingestRound) float64) float64 {
		v := make([]float64, len(res.Rounds))
		for i, rd := range res.Rounds {
			v[i] = f(rd)
		}
		return median(v)
	}
	res.BaselineRPS = med(func(r ingestRound) float64 { return r.BaselineRPS })
	res.HTTPFloorRPS = med(func(r ingestRound) float64 { return r.HTTPFloorRPS })
	res.RPS = med(func(r ingestRound) float64 { return r.RPS })
	res.FloorRatio = med(func(r ingestRound) float64 { return r.FloorRatio })
	res.BaselineCPUus = med(func(r ingestRound) float64 { return r.BaselineCPUus })
	res.HTTPFloorCPUus = med(func(r ingestRound) float64 { return r.HTTPFloorCPUus })
	res.CPUus = med(func(r ingestRound) float64 { return r.CPUus })
	res.CPUFloorRatio = med(func(r ingestRound) float64 { return r.CPUFloorRatio })
	res.Ratio = res.RPS / res.BaselineRPS
	res.P50ms, res.P99ms = pct(lat, 50), pct(lat, 99)

	// Then the receiver paced at rate events/s, for its latency.
	fmt.Fprintf(progress, "bench: receiver paced at %d ev/s for %s…\n", rate, dur)
	phase("paced")
	lat = lat[:0]
	total := int(float64(rate) * dur.Seconds())
	pool := make(chan *rawClient, 64)
	for range cap(pool) {
		pool <- newClient()
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range total {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		c := <-pool
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { pool <- c }()
			d, err := send(c)
			if err != nil {
				errs.Add(1)
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(pool)
	for c := range pool {
		c.close()
	}
	res.Paced = len(lat)
	res.P50msAt1000, res.P99msAt1000 = pct(lat, 50), pct(lat, 99)
	res.Errors = errs.Load()
	if sink != nil {
		// Flush what is batched, then count what arrived.
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			return nil, fmt.Errorf("otlp flush: %w", err)
		}
		res.otlpResult = sink.result()
	}
	return res, nil
}

// selfCPU is this process's user + system CPU time so far, in µs.
func selfCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return cpuMicros(ru)
}

// median of v (the mean of the middle two when len(v) is even).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func perEvent(us, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(us) / float64(n)
}

// benchBody is a generic leaver event padded to exactly size bytes.
func benchBody(id string, size int) []byte {
	b := fmt.Appendf(nil, `{"type":"leaver","occurred_at":"2026-11-28T10:00:00Z","person":{"id":"%s","email":"%s@bench.test","status":"terminated","name":""}}`, id, id)
	pad := size - len(b)
	if pad <= 0 {
		return b
	}
	i := len(b) - len(`"}}`)
	out := append([]byte{}, b[:i]...)
	for range pad {
		out = append(out, 'x')
	}
	return append(out, b[i:]...)
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return float64(s[i].Microseconds()) / 1000
}

// rawClient is one keep-alive HTTP/1.1 connection of a bench sender.
type rawClient struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	buf  []byte
}

// do writes one request and reads its answer, reconnecting once if the
// connection was closed meanwhile.
func (c *rawClient) do(req []byte) (int, error) {
	for attempt := 0; ; attempt++ {
		if c.conn == nil {
			conn, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
			if err != nil {
				return 0, err
			}
			c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
		}
		_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := c.conn.Write(req)
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(c.br, nil)
		}
		if err != nil {
			c.close()
			if attempt == 0 {
				continue
			}
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Close {
			c.close()
		}
		return resp.StatusCode, nil
	}
}

func (c *rawClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}
