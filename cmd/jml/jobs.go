package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// jobView is GET /v1/jobs/{id} (internal/app.JobView).
type jobView struct {
	ID         string          `json:"job_id"`
	Kind       string          `json:"kind"`
	Operator   string          `json:"operator"`
	State      string          `json:"state"`
	Status     string          `json:"status,omitempty"` // "running" in a long route's first answer
	RunID      string          `json:"run_id,omitempty"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	Seconds    float64         `json:"seconds"`
	Progress   jobProgress     `json:"progress"`
	Error      string          `json:"error,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
}

type jobProgress struct {
	Done  map[string]int64 `json:"done,omitempty"`
	Total map[string]int64 `json:"total,omitempty"`
	Note  string           `json:"note,omitempty"`
}

// longCall starts long work on the instance (a route that runs a job). With
// detach it returns at once with the job (detached true); otherwise it waits
// for the job, drawing its progress on stderr when stderr is a terminal, and
// returns the job's result — the route's answer as before jobs existed.
func longCall(ctx context.Context, c *adminClient, method, path string, q url.Values, body io.Reader, contentType string,
	detach bool, stderr io.Writer) (raw json.RawMessage, job *jobView, err error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("wait", "2s")
	if detach {
		q.Set("wait", "0s")
	}
	if err := c.doReader(ctx, method, path, q, body, contentType, &raw); err != nil {
		return nil, nil, err
	}
	var first jobView
	if json.Unmarshal(raw, &first) != nil || first.ID == "" || first.Status != "running" {
		return raw, nil, nil // finished within the wait: the answer is the result
	}
	if detach {
		return nil, &first, nil
	}
	v, err := followJob(ctx, c, first.ID, stderr)
	if err != nil {
		return nil, v, err
	}
	return v.Result, v, nil
}

// followJob polls a job until it ends, drawing progress on a terminal. A
// failed or cancelled job is an error. Interrupting the CLI leaves the job
// running (it says how to follow or cancel it).
func followJob(ctx context.Context, c *adminClient, id string, stderr io.Writer) (*jobView, error) {
	bar := newBar(stderr)
	defer bar.end()
	for {
		var v jobView
		if err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, &v); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("stopped waiting; job %s goes on (jml jobs wait %s, jml jobs cancel %s): %w", id, id, id, ctx.Err())
			}
			return nil, err
		}
		bar.drawJob(v)
		switch v.State {
		case "succeeded":
			return &v, nil
		case "failed":
			return &v, fmt.Errorf("job %s (%s) failed: %s", v.ID, v.Kind, v.Error)
		case "cancelled":
			return &v, fmt.Errorf("job %s (%s) was cancelled", v.ID, v.Kind)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped waiting; job %s goes on (jml jobs wait %s, jml jobs cancel %s): %w", id, id, id, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// drawJob draws a job's progress: each phase's done/total, else the elapsed time.
func (b *bar) drawJob(v jobView) {
	done, total := map[string]int{}, map[string]int{}
	for k, n := range v.Progress.Done {
		done[k] = int(n)
	}
	for k, n := range v.Progress.Total {
		total[k] = int(n)
	}
	phases := []string{"members", "teams", "invites", "directory", "apply", "validate", "import"}
	for _, k := range slices.Sorted(maps.Keys(done)) {
		if !slices.Contains(phases, k) {
			phases = append(phases, k)
		}
	}
	b.drawPhases(fmt.Sprintf("%s %s %.0fs", v.Kind, v.ID, v.Seconds), phases, done, total)
}

// printDetached prints a detached job: its id and how to follow it.
func printDetached(stdout io.Writer, asJSON bool, j *jobView) error {
	if asJSON {
		return printJSON(stdout, j)
	}
	fmt.Fprintf(stdout, "job %s (%s) started; follow it: jml jobs wait %s; cancel it: jml jobs cancel %s\n", j.ID, j.Kind, j.ID, j.ID)
	return nil
}

// cmdJobs: jml jobs [--json].
func cmdJobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var v struct {
		Jobs []jobView `json:"jobs"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/jobs", nil, &v); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	if len(v.Jobs) == 0 {
		fmt.Fprintln(stdout, "no jobs in this process (jobs are kept in memory for an hour after they end, and forgotten on restart)")
	}
	for _, j := range v.Jobs {
		fmt.Fprintf(stdout, "%-22s %-14s %-10s %6.0fs  by %s", j.ID, j.Kind, j.State, j.Seconds, j.Operator)
		if j.RunID != "" {
			fmt.Fprintf(stdout, "  run %s", j.RunID)
		}
		if j.Error != "" {
			fmt.Fprintf(stdout, "  %s", j.Error)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

func jobIDLeaf(name string, run func(ctx context.Context, c *adminClient, id string, asJSON bool, stdout, stderr io.Writer) error) leaf {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		asJSON := fs.Bool("json", false, "print one JSON object")
		pos, err := parseWithPositional(fs, args, 1)
		if err != nil {
			return err
		}
		if len(pos) == 0 {
			return usageErrorf("%s: job ID is required", name)
		}
		c, err := newAdminClient()
		if err != nil {
			return err
		}
		return run(ctx, c, pos[0], *asJSON, stdout, stderr)
	}
}

var (
	cmdJobShow = jobIDLeaf("jobs show", func(ctx context.Context, c *adminClient, id string, asJSON bool, stdout, _ io.Writer) error {
		var v any
		if err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, &v); err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, v)
		}
		printText(stdout, v)
		return nil
	})
	cmdJobWait = jobIDLeaf("jobs wait", func(ctx context.Context, c *adminClient, id string, asJSON bool, stdout, stderr io.Writer) error {
		v, err := followJob(ctx, c, id, stderr)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, v)
		}
		var res any
		_ = json.Unmarshal(v.Result, &res)
		printText(stdout, res)
		return nil
	})
	cmdJobCancel = jobIDLeaf("jobs cancel", func(ctx context.Context, c *adminClient, id string, asJSON bool, stdout, _ io.Writer) error {
		var v any
		if err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, &v); err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, v)
		}
		printText(stdout, v)
		return nil
	})
)
