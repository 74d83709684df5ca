package app

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/roster"
)

// RosterFetch is the scheduled HR export (JML_ROSTER_URL).
type RosterFetch struct {
	URL           string
	Authorization string // sent as the Authorization header (secret)
	Full          bool   // mark people absent from the export as terminated
	Every         time.Duration
	HTTP          *http.Client
}

// ReconcileOptions configure the reconcile jobs and routes of a Worker.
type ReconcileOptions struct {
	Roster RosterFetch
	// HaltTTL is how long a halted reconcile plan waits for approval (default 24h).
	HaltTTL time.Duration
	// RunLeaseTTL: see reconcile.Options (default 10s).
	RunLeaseTTL time.Duration
	// RosterMaxBytes bounds a roster body, on POST /v1/roster/import (413
	// beyond) and in the scheduled fetch (an error); default
	// roster.DefaultMaxBytes (JML_ROSTER_MAX_BYTES).
	RosterMaxBytes int64
}

// reconcileService is a Worker's reconciler and job state.
type reconcileService struct {
	w      *Worker
	rec    *reconcile.Reconciler
	opts   ReconcileOptions
	mu     sync.Mutex
	roster [32]byte // hash of the last imported export
}

// UseReconcile sets the reconcile options of w; call it before Run (the
// scheduler reads them when it starts).
func (w *Worker) UseReconcile(o ReconcileOptions) error {
	s, err := w.reconcile()
	if err != nil {
		return err
	}
	rec, err := newReconciler(w, o)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.opts, s.rec = o, rec
	s.mu.Unlock()
	return nil
}

func newReconciler(w *Worker, o ReconcileOptions) (*reconcile.Reconciler, error) {
	selfID, selfEmail := w.conv.Self()
	return reconcile.New(reconcile.Options{Sentry: w.o.Sentry, Converger: w.conv, Directory: w.records.Directory,
		Runs: w.records.Runs, Evidence: stampedLog{w.records.Evidence}, Tokens: w.tokens, Leases: w.o.Coord, Owner: w.o.Owner,
		Policy: w.o.Policy, SelfMemberID: selfID, SelfEmail: selfEmail, Logger: w.o.Logger, Meter: w.o.Telemetry.MeterProvider, TracerProvider: w.o.Telemetry.TracerProvider,
		Target: w.o.Target, HaltTTL: o.HaltTTL, RunLeaseTTL: o.RunLeaseTTL,
		Alert: func(ctx context.Context, kind, summary string) { w.alert(ctx, kind, "", summary) }})
}

// Reconciler returns w's reconciler.
func (w *Worker) Reconciler() (*reconcile.Reconciler, error) {
	s, err := w.reconcile()
	if err != nil {
		return nil, err
	}
	return s.rec, nil
}

func (w *Worker) reconcile() (*reconcileService, error) {
	w.reconMu.Lock()
	defer w.reconMu.Unlock()
	if w.recon != nil {
		return w.recon, nil
	}
	rec, err := newReconciler(w, ReconcileOptions{})
	if err != nil {
		return nil, err
	}
	w.recon = &reconcileService{w: w, rec: rec}
	return w.recon, nil
}

// schedJob is one entry of the Worker's job list (the same struct type).
type schedJob = struct {
	name   string
	def    gocron.JobDefinition
	task   func(context.Context) error
	shared bool
}

// reconcileJobs are the fleet-wide scheduled jobs of issue 7: full reconcile
// on the policy's schedule, applying approved runs, pending invites, token
// hygiene and the roster fetch. Each runs once per tick across replicas: the
// scheduler's distributed lock keeps two from running at once, and a per-tick
// key in the coordination store stops a replica whose clock fires later from
// running the same tick again.
func (w *Worker) reconcileJobs() []schedJob {
	s, err := w.reconcile()
	if err != nil {
		w.o.Logger.Error("reconcile jobs disabled", "err", err)
		return nil
	}
	rj, schedule, ok := w.reconcileJobFor(w.o.Policy().Reconcile.Schedule)
	if !ok {
		return nil
	}
	w.schedMu.Lock()
	w.reconcileSchedule = schedule
	w.schedMu.Unlock()
	s.mu.Lock()
	ro := s.opts
	s.mu.Unlock()
	jobs := []schedJob{
		rj,
		{"reconcile-approved", gocron.DurationJob(5 * time.Second), s.rec.ApplyApprovedRuns, true},
		{"pending-invites", gocron.DurationJob(5 * time.Minute), s.once("pending-invites", 5*time.Minute, false, func(ctx context.Context) error {
			sum, err := s.rec.Invites(ctx)
			if err == nil {
				w.metrics.setInvites(sum.Pending)
			}
			return err
		}), true},
		{"token-hygiene", gocron.DurationJob(time.Hour), s.once("token-hygiene", time.Hour, false, func(ctx context.Context) error {
			_, err := s.rec.TokenHygiene(ctx, false)
			return err
		}), true},
	}
	if ro.Roster.URL != "" {
		every := ro.Roster.Every
		if every <= 0 {
			every = time.Hour
		}
		jobs = append(jobs, schedJob{"roster-fetch", gocron.DurationJob(every), s.once("roster-fetch", every, false, s.fetchRoster), true})
	}
	return jobs
}

// reconcileSchedule is the policy's reconcile schedule ("" means hourly).
func reconcileSchedule(p policy.Policy) string { return orHourly(p.Reconcile.Schedule) }

func orHourly(schedule string) string {
	if schedule == "" {
		return "0 * * * *"
	}
	return schedule
}

// reconcileJobFor is the scheduled full reconcile on schedule (cron, 5 or 6
// fields; "" = hourly), and the schedule it resolved to.
func (w *Worker) reconcileJobFor(schedule string) (schedJob, string, bool) {
	s, err := w.reconcile()
	if err != nil {
		return schedJob{}, "", false
	}
	schedule = orHourly(schedule)
	withSeconds := len(strings.Fields(schedule)) == 6
	grain := time.Minute
	if withSeconds {
		grain = time.Second
	}
	return schedJob{"reconcile", gocron.CronJob(schedule, withSeconds), s.once("reconcile", grain, true, func(ctx context.Context) error {
		_, err := s.rec.Run(ctx, reconcile.RunOptions{Trigger: "schedule"})
		if errors.Is(err, reconcile.ErrBusy) {
			// The previous run (here or on another replica) still holds the
			// run lease: this tick is skipped, the next one tries again.
			w.o.Logger.WarnContext(ctx, "reconcile tick skipped: a run is still in progress", "schedule", schedule)
			return nil
		}
		return err
	}), true}, schedule, true
}

// once runs fn at most once per tick fleet-wide: the tick is the current time
// rounded (cron, aligned ticks) or truncated (intervals) to grain, claimed with
// MarkSeen in the coordination store.
func (s *reconcileService) once(name string, grain time.Duration, round bool, fn func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		now := time.Now()
		tick := now.Truncate(grain)
		if round {
			tick = now.Round(grain)
		}
		first, err := s.w.o.Coord.MarkSeen(ctx, "tick:"+name+":"+strconv.FormatInt(tick.Unix(), 10), 2*grain+time.Minute)
		if err != nil {
			return fmt.Errorf("claim tick: %w", err)
		}
		if !first {
			return nil
		}
		return fn(ctx)
	}
}

// fetchRoster downloads the HR export and imports it (desired state only).
func (s *reconcileService) fetchRoster(ctx context.Context) error {
	s.mu.Lock()
	rf := s.opts.Roster
	s.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rf.URL, nil)
	if err != nil {
		return fmt.Errorf("JML_ROSTER_URL: %w", err)
	}
	if rf.Authorization != "" {
		req.Header.Set("Authorization", rf.Authorization)
	}
	hc := rf.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("roster fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("roster fetch: %s", resp.Status)
	}
	// The export is spooled to a temporary file while it is hashed, never
	// held in memory: an unchanged export is skipped, a changed one is
	// validated and then imported, all or nothing, one row at a time.
	f, sum, err := spoolRoster(resp.Body, s.maxBytes())
	if err != nil {
		return fmt.Errorf("roster fetch: %w", err)
	}
	defer removeSpool(f)
	s.mu.Lock()
	same := sum == s.roster
	s.mu.Unlock()
	if same {
		return nil
	}
	asOf := time.Now()
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		asOf = lm
	}
	res, err := importSpooled(ctx, s.w, rf.URL, f, roster.ImportOptions{AsOf: asOf, Full: rf.Full, MaxClockSkew: s.w.o.MaxClockSkew, IDSpaces: s.w.o.IDSpaces})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.roster = sum
	s.mu.Unlock()
	s.w.o.Logger.InfoContext(ctx, "roster imported", "rows", res.Rows, "applied", res.Applied, "terminated", res.Terminated,
		"as_of", res.AsOf)
	return nil
}

// maxBytes is the roster size limit.
func (s *reconcileService) maxBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.RosterMaxBytes > 0 {
		return s.opts.RosterMaxBytes
	}
	return roster.DefaultMaxBytes
}

// errTooLarge maps to 413.
var errTooLarge = errors.New("too large")

// spoolRoster copies r into a temporary file (mode 0600) while hashing it,
// so that a roster is never held in memory: at most max bytes, beyond that
// the error wraps errTooLarge. Remove the file with removeSpool.
func spoolRoster(r io.Reader, max int64) (*os.File, [32]byte, error) {
	var sum [32]byte
	f, err := os.CreateTemp("", "jml-roster-*")
	if err != nil {
		return nil, sum, fmt.Errorf("roster spool: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, max+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || (err == nil && n > max):
		err = fmt.Errorf("%w: the roster is larger than %d bytes (JML_ROSTER_MAX_BYTES)", errTooLarge, max)
	case err != nil:
		err = fmt.Errorf("roster: read: %w", err)
	}
	if err != nil {
		removeSpool(f)
		return nil, sum, err
	}
	copy(sum[:], h.Sum(nil))
	return f, sum, nil
}

func removeSpool(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// importSpooled validates the spooled roster, then imports it row by row:
// an invalid roster changes nothing.
func importSpooled(ctx context.Context, w *Worker, name string, f *os.File, o roster.ImportOptions) (roster.Result, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return roster.Result{}, fmt.Errorf("roster spool: %w", err)
	}
	if _, err := roster.Scan(name, f, nil); err != nil {
		return roster.Result{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return roster.Result{}, fmt.Errorf("roster spool: %w", err)
	}
	return roster.ImportReader(ctx, w.records.Directory, name, f, o)
}

// ReconcileRoutes returns the operator routes of reconcile, the roster
// import, the access review and token hygiene, for AdminOptions.Routes.
func ReconcileRoutes(w *Worker, o ReconcileOptions) []func(handle func(pattern string, f func(*http.Request) (any, error))) {
	if err := w.UseReconcile(o); err != nil {
		w.o.Logger.Error("reconcile routes disabled", "err", err)
		return nil
	}
	s, _ := w.reconcile()
	return []func(handle func(string, func(*http.Request) (any, error))){func(handle func(string, func(*http.Request) (any, error))) {
		handle("POST /v1/reconcile", func(r *http.Request) (any, error) {
			// A job: the answer is the finished run when it ends within
			// ?wait=, else the job ("status": "running", run_id, job_id).
			dry := truthy(r.URL.Query().Get("dry_run"))
			id := s.rec.NewRunID()
			j := s.startRun(r, "reconcile", id, reconcile.RunOptions{DryRun: dry, Trigger: "operator:" + OperatorFrom(r.Context()), RunID: id})
			return j.answer(r)
		})
		handle("GET /v1/reconcile/progress", func(*http.Request) (any, error) { return s.rec.Progress(), nil })
		handle("GET /v1/reconcile/run", func(r *http.Request) (any, error) {
			id := r.URL.Query().Get("run_id")
			if id == "" {
				return nil, errBad("run_id is required")
			}
			run, err := w.records.Runs.Get(r.Context(), id)
			if err != nil {
				return nil, err
			}
			return map[string]any{"run_id": run.ID, "status": run.Status, "counts": run.Counts, "started_at": run.StartedAt,
				"finished_at": run.FinishedAt, "expires_at": run.ExpiresAt, "approved_by": run.ApprovedBy}, nil
		})
		handle("GET /v1/reconcile/plan", func(r *http.Request) (any, error) {
			id := r.URL.Query().Get("run_id")
			run, err := w.records.Runs.Get(r.Context(), id)
			if err != nil {
				return nil, err
			}
			return reconcile.DecodePlan(run.Plan)
		})
		handle("POST /v1/reconcile/approve", func(r *http.Request) (any, error) {
			id := r.URL.Query().Get("run_id")
			if id == "" {
				return nil, errBad("run_id is required")
			}
			return w.approveRun(r, id)
		})
		handle("POST /v1/roster/import", func(r *http.Request) (any, error) {
			q := r.URL.Query()
			asOf := time.Now()
			if v := q.Get("as_of"); v != "" {
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return nil, errBad("as_of: want RFC 3339, e.g. 2026-11-28T10:00:00Z")
				}
				asOf = t
			}
			// The upload is spooled within the request; validating and
			// importing it is a job.
			f, _, err := spoolRoster(http.MaxBytesReader(nil, r.Body, s.maxBytes()), s.maxBytes())
			if err != nil {
				return nil, err
			}
			fi, err := f.Stat()
			if err != nil {
				removeSpool(f)
				return nil, fmt.Errorf("roster spool: %w", err)
			}
			opts := roster.ImportOptions{AsOf: asOf, Full: truthy(q.Get("full")), DryRun: truthy(q.Get("dry_run")),
				MaxClockSkew: w.o.MaxClockSkew, IDSpaces: w.o.IDSpaces}
			var validated, imported countingFile
			validated.size, imported.size = fi.Size(), fi.Size()
			progress := func() JobProgress {
				return JobProgress{Done: map[string]int64{"validate": validated.n.Load(), "import": imported.n.Load()},
					Total: map[string]int64{"validate": fi.Size(), "import": fi.Size()}, Note: "bytes"}
			}
			j := w.jobs.start(context.WithoutCancel(r.Context()), "roster import", OperatorFrom(r.Context()), "", progress, func(ctx context.Context) (any, error) {
				defer removeSpool(f)
				res, err := importSpooledCounting(ctx, w, "request body", f, opts, &validated, &imported)
				if errors.Is(err, roster.ErrInvalid) {
					return nil, errBad(err.Error())
				}
				if err == nil {
					w.o.Logger.InfoContext(ctx, "roster imported through the admin API", "operator", OperatorFrom(ctx),
						"rows", res.Rows, "applied", res.Applied, "terminated", res.Terminated, "full", opts.Full, "dry_run", opts.DryRun)
				}
				return res, err
			})
			return j.answer(r)
		})
		handle("GET /v1/access/review", func(r *http.Request) (any, error) {
			// A job wrapping the access review unchanged.
			j := w.jobs.start(context.WithoutCancel(r.Context()), "access review", OperatorFrom(r.Context()), "", nil, func(ctx context.Context) (any, error) {
				rows, err := s.rec.Review(ctx)
				if err != nil {
					return nil, err
				}
				return map[string]any{"members": rows}, nil
			})
			return j.answer(r)
		})
		handle("GET /v1/tokens/hygiene", func(r *http.Request) (any, error) {
			fs, err := s.rec.TokenHygiene(r.Context(), true)
			return map[string]any{"tokens": fs, "applied": false}, err
		})
		handle("POST /v1/tokens/hygiene", func(r *http.Request) (any, error) {
			fs, err := s.rec.TokenHygiene(r.Context(), false)
			return map[string]any{"tokens": fs, "applied": true}, err
		})
		handle("POST /v1/invites", func(r *http.Request) (any, error) {
			sum, err := s.rec.Invites(r.Context())
			if err == nil {
				w.metrics.setInvites(sum.Pending)
			}
			return sum, err
		})
	}}
}

// startRun starts a reconcile run (or a dry run, or a preview) as a job whose
// progress is the run's.
func (s *reconcileService) startRun(r *http.Request, kind, id string, ro reconcile.RunOptions) *job {
	progress := func() JobProgress {
		p := s.rec.Progress()
		if p.RunID != id {
			return JobProgress{Note: "waiting for the run to start"}
		}
		out := JobProgress{Done: map[string]int64{}, Total: map[string]int64{}}
		for k, v := range p.Done {
			out.Done[k] = int64(v)
		}
		for k, v := range p.Total {
			out.Total[k] = int64(v)
		}
		return out
	}
	return s.w.jobs.start(context.WithoutCancel(r.Context()), kind, OperatorFrom(r.Context()), id, progress, func(ctx context.Context) (any, error) {
		sum, err := s.rec.Run(ctx, ro)
		if errors.Is(err, reconcile.ErrBusy) {
			return nil, errBad(err.Error())
		}
		return sum, err
	})
}

// approveRun approves the halted run id and applies its stored plan, as a
// job (a large plan outlasts any request).
func (w *Worker) approveRun(r *http.Request, id string) (any, error) {
	s, err := w.reconcile()
	if err != nil {
		return nil, err
	}
	op := OperatorFrom(r.Context())
	return w.jobs.start(context.WithoutCancel(r.Context()), "reconcile approve", op, id, nil, func(ctx context.Context) (any, error) {
		return s.rec.Approve(ctx, id, op)
	}).answer(r)
}

// countingFile counts the bytes read through it (a roster job's progress).
type countingFile struct {
	n    atomic.Int64
	size int64
}

type countingReader struct {
	r io.Reader
	c *countingFile
}

func (cr countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.c.n.Add(int64(n))
	return n, err
}

// importSpooledCounting is importSpooled counting the bytes of each pass.
func importSpooledCounting(ctx context.Context, w *Worker, name string, f *os.File, o roster.ImportOptions, validated, imported *countingFile) (roster.Result, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return roster.Result{}, fmt.Errorf("roster spool: %w", err)
	}
	if _, err := roster.Scan(name, countingReader{f, validated}, nil); err != nil {
		return roster.Result{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return roster.Result{}, fmt.Errorf("roster spool: %w", err)
	}
	return roster.ImportReader(ctx, w.records.Directory, name, countingReader{f, imported}, o)
}

func truthy(v string) bool {
	b, _ := strconv.ParseBool(v)
	return b || v == "yes"
}
