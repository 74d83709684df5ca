package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// reconcileView is `jml reconcile --json`.
type reconcileView struct {
	RunID   string         `json:"run_id"`
	Status  string         `json:"status"`
	Counts  map[string]int `json:"counts"`
	Halted  string         `json:"halted,omitempty"`
	Expires any            `json:"expires_at,omitempty"`
	Detail  map[string]any `json:"detail,omitempty"`
}

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "approve":
			if len(args) < 2 {
				return errors.New("reconcile approve: RUN_ID is required")
			}
			id := args[1]
			return cmdSimple(http.MethodPost, "/v1/reconcile/approve", func(*flag.FlagSet) func() (url.Values, error) {
				return func() (url.Values, error) { return url.Values{"run_id": {id}}, nil }
			})(ctx, args[2:], stdout, stderr)
		case "plan":
			if len(args) < 2 {
				return errors.New("reconcile plan: RUN_ID is required")
			}
			id := args[1]
			return cmdSimple(http.MethodGet, "/v1/reconcile/plan", func(*flag.FlagSet) func() (url.Values, error) {
				return func() (url.Values, error) { return url.Values{"run_id": {id}}, nil }
			})(ctx, args[2:], stdout, stderr)
		}
		return fmt.Errorf("reconcile: unknown subcommand %q (approve RUN_ID | plan RUN_ID)", args[0])
	}
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dry := fs.Bool("dry-run", false, "plan only: change nothing")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var first map[string]any
	if err := c.do(ctx, http.MethodPost, "/v1/reconcile", url.Values{"dry_run": {fmt.Sprint(*dry)}, "wait": {"2s"}}, &first); err != nil {
		return err
	}
	id, _ := first["run_id"].(string)
	if first["status"] == "running" {
		bar := newBar(stderr)
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
			var p struct {
				RunID   string         `json:"run_id"`
				Running bool           `json:"running"`
				Done    map[string]int `json:"done"`
				Total   map[string]int `json:"total"`
			}
			if err := c.do(ctx, http.MethodGet, "/v1/reconcile/progress", nil, &p); err != nil {
				return err
			}
			if p.RunID == id {
				bar.draw(p.Done, p.Total)
				if !p.Running {
					break
				}
			}
		}
		bar.end()
		var run map[string]any
		if err := c.do(ctx, http.MethodGet, "/v1/reconcile/run", url.Values{"run_id": {id}}, &run); err != nil {
			return err
		}
		first = run
	}
	v := reconcileView{RunID: id, Detail: first, Counts: map[string]int{}}
	v.Status, _ = first["status"].(string)
	v.Halted, _ = first["halted"].(string)
	v.Expires = first["expires_at"]
	if cm, ok := first["counts"].(map[string]any); ok {
		for k, x := range cm {
			if f, ok := x.(float64); ok {
				v.Counts[k] = int(f)
			}
		}
	}
	for _, k := range []string{"remove", "invite", "update"} {
		if _, ok := v.Counts[k]; !ok {
			v.Counts[k] = 0
		}
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "run %s: %s  remove=%d invite=%d update=%d report=%d\n", v.RunID, v.Status,
		v.Counts["remove"], v.Counts["invite"], v.Counts["update"], v.Counts["report"])
	if v.Halted != "" {
		fmt.Fprintf(stdout, "  halted by the brakes: %s\n  review: jml reconcile plan %s\n  apply exactly this plan: jml approve %s (expires %v)\n",
			v.Halted, v.RunID, v.RunID, v.Expires)
	}
	return nil
}

// bar draws progress on a terminal (nothing otherwise: metrics always carry it).
type bar struct {
	w   io.Writer
	tty bool
}

func newBar(w io.Writer) *bar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &bar{w: w, tty: tty}
}

func (b *bar) draw(done, total map[string]int) {
	if !b.tty {
		return
	}
	var parts []string
	for _, ph := range []string{"members", "teams", "invites", "directory", "apply"} {
		d, t := done[ph], total[ph]
		switch {
		case t > 0:
			const width = 20
			n := min(width, d*width/t)
			parts = append(parts, fmt.Sprintf("%s [%s%s] %d/%d", ph, strings.Repeat("#", n), strings.Repeat(".", width-n), d, t))
		case d > 0:
			parts = append(parts, fmt.Sprintf("%s %d", ph, d))
		}
	}
	fmt.Fprintf(b.w, "\r\033[K%s", strings.Join(parts, "  "))
}

func (b *bar) end() {
	if b.tty {
		fmt.Fprintln(b.w)
	}
}
