package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Job states.
const (
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// JobProgress is how far a job is: items done and the total per phase (when
// known), and a one-line note.
type JobProgress struct {
	Done  map[string]int64 `json:"done,omitempty"`
	Total map[string]int64 `json:"total,omitempty"`
	Note  string           `json:"note,omitempty"`
}

// JobView is a job as GET /v1/jobs/{id} shows it; Result is set once it
// succeeded.
type JobView struct {
	ID         string      `json:"job_id"`
	Kind       string      `json:"kind"`
	Operator   string      `json:"operator"`
	State      string      `json:"state"`
	RunID      string      `json:"run_id,omitempty"`
	StartedAt  time.Time   `json:"started_at"`
	FinishedAt time.Time   `json:"finished_at,omitzero"`
	Seconds    float64     `json:"seconds"`
	Progress   JobProgress `json:"progress"`
	Error      string      `json:"error,omitempty"`
	Result     any         `json:"result,omitempty"`
}

// jobs runs the long work an operator asks for (reconcile, plan --all, access
// review, roster import) in the process, outside any request: a request
// starts a job and answers with its result if it finished within the
// request's wait, else with the job, which the CLI then follows through
// GET /v1/jobs/{id}. Job state lives in this process's memory only: a
// restart forgets it (the reconcile runs themselves are stored in Runs).
// Finished jobs are kept for jobKeep, at most jobMax of them.
type jobs struct {
	mu  sync.Mutex
	all map[string]*job
	now func() time.Time
}

const (
	jobKeep = time.Hour
	jobMax  = 200
)

type job struct {
	mu       sync.Mutex
	view     JobView
	cancel   context.CancelFunc
	finished chan struct{}
	progress func() JobProgress
	err      error // why it failed (answer returns it, keeping its HTTP status)
}

func newJobs() *jobs { return &jobs{all: map[string]*job{}, now: time.Now} }

// start runs fn as a job of kind for operator. fn's context is cancelled by
// Cancel and when ctx (the process's, never a request's) ends; progress, when
// set, is read whenever the job is shown.
func (js *jobs) start(ctx context.Context, kind, operator, runID string, progress func() JobProgress, fn func(context.Context) (any, error)) *job {
	id := "job_" + randomID()
	ctx, cancel := context.WithCancel(ctx)
	j := &job{cancel: cancel, finished: make(chan struct{}), progress: progress,
		view: JobView{ID: id, Kind: kind, Operator: operator, State: JobRunning, RunID: runID, StartedAt: js.now().UTC()}}
	js.mu.Lock()
	js.prune()
	js.all[id] = j
	js.mu.Unlock()
	go func() {
		defer cancel()
		res, err := fn(ctx)
		j.mu.Lock()
		j.view.FinishedAt = js.now().UTC()
		switch {
		case err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled):
			j.view.State, j.view.Error = JobCancelled, "cancelled"
		case err != nil:
			j.view.State, j.view.Error, j.err = JobFailed, err.Error(), err
		default:
			j.view.State, j.view.Result = JobSucceeded, res
		}
		j.mu.Unlock()
		close(j.finished)
	}()
	return j
}

// prune drops finished jobs older than jobKeep, and the oldest finished ones
// beyond jobMax. js.mu is held.
func (js *jobs) prune() {
	var fin []*job
	for id, j := range js.all {
		v := j.snapshot(false)
		if v.State == JobRunning {
			continue
		}
		if js.now().Sub(v.FinishedAt) > jobKeep {
			delete(js.all, id)
			continue
		}
		fin = append(fin, j)
	}
	if len(fin) < jobMax {
		return
	}
	slices.SortFunc(fin, func(a, b *job) int { return a.view.FinishedAt.Compare(b.view.FinishedAt) })
	for _, j := range fin[:len(fin)-jobMax+1] {
		delete(js.all, j.view.ID)
	}
}

// snapshot is the job's view, with its result when withResult.
func (j *job) snapshot(withResult bool) JobView {
	j.mu.Lock()
	v := j.view
	j.mu.Unlock()
	if !withResult {
		v.Result = nil
	}
	end := v.FinishedAt
	if end.IsZero() {
		end = time.Now().UTC()
	}
	v.Seconds = end.Sub(v.StartedAt).Seconds()
	if j.progress != nil {
		v.Progress = j.progress()
	}
	return v
}

// wait waits up to d for the job to finish and reports whether it did.
func (j *job) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-j.finished:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (js *jobs) get(id string) (*job, error) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.all[id]
	if !ok {
		return nil, &notFound{"job " + id + " is not known to this instance (jobs live in the process that ran them and are forgotten on restart)"}
	}
	return j, nil
}

// list returns every job, running ones first, then the newest.
func (js *jobs) list() []JobView {
	js.mu.Lock()
	all := make([]*job, 0, len(js.all))
	for _, j := range js.all {
		all = append(all, j)
	}
	js.mu.Unlock()
	out := make([]JobView, 0, len(all))
	for _, j := range all {
		out = append(out, j.snapshot(false))
	}
	slices.SortFunc(out, func(a, b JobView) int {
		if (a.State == JobRunning) != (b.State == JobRunning) {
			if a.State == JobRunning {
				return -1
			}
			return 1
		}
		return b.StartedAt.Compare(a.StartedAt)
	})
	return out
}

// answer is a long route's answer: the job's result when it finished within
// the request's wait (the route's answer before jobs existed), else the job
// (state "running"; the client follows GET /v1/jobs/{id}).
func (j *job) answer(r *http.Request) (any, error) {
	if !j.wait(r.Context(), jobWait(r)) {
		v := j.snapshot(false)
		return jobRunning{JobView: v, Status: JobRunning}, nil
	}
	v := j.snapshot(true)
	if v.State != JobSucceeded {
		j.mu.Lock()
		err := j.err
		j.mu.Unlock()
		if err == nil {
			err = errors.New(v.Error)
		}
		return nil, err
	}
	return v.Result, nil
}

// jobRunning is the answer of a long route whose job is still running: the
// job, with "status": "running" as POST /v1/reconcile answered before jobs.
type jobRunning struct {
	JobView
	Status string `json:"status"`
}

// jobWait is how long a long route waits for its job before answering with
// the job: ?wait= (0 to 25s), 20s by default — under the admin server's
// write timeout.
func jobWait(r *http.Request) time.Duration {
	if v, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil && v >= 0 && v <= 25*time.Second {
		return v
	}
	return 20 * time.Second
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// notFound maps to 404.
type notFound struct{ msg string }

func (n *notFound) Error() string   { return n.msg }
func (n *notFound) Is(t error) bool { return t == state.ErrNotFound }

// jobRoutes are GET /v1/jobs, GET /v1/jobs/{id} and POST /v1/jobs/{id}/cancel.
func (js *jobs) routes(handle func(pattern string, f func(*http.Request) (any, error)), logf func(ctx context.Context, msg string, args ...any)) {
	handle("GET /v1/jobs", func(*http.Request) (any, error) { return map[string]any{"jobs": js.list()}, nil })
	handle("GET /v1/jobs/{id}", func(r *http.Request) (any, error) {
		j, err := js.get(r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		return j.snapshot(true), nil
	})
	handle("POST /v1/jobs/{id}/cancel", func(r *http.Request) (any, error) {
		j, err := js.get(r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		if v := j.snapshot(false); v.State != JobRunning {
			return nil, &conflict{fmt.Sprintf("job %s is %s, not running", v.ID, v.State)}
		}
		j.cancel()
		logf(r.Context(), "job cancelled", "job_id", j.view.ID, "kind", j.view.Kind, "operator", OperatorFrom(r.Context()))
		j.wait(r.Context(), 10*time.Second)
		return j.snapshot(false), nil
	})
}
