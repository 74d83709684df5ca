package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
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
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dry := fs.Bool("dry-run", false, "plan only: change nothing")
	asJSON := fs.Bool("json", false, "print one JSON object")
	detach := fs.Bool("detach", false, "start the run as a job and return at once with its id")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	raw, job, err := longCall(ctx, c, http.MethodPost, "/v1/reconcile", url.Values{"dry_run": {fmt.Sprint(*dry)}}, nil, "", *detach, stderr)
	if err != nil {
		return err
	}
	if job != nil {
		return printDetached(stdout, *asJSON, job)
	}
	var first map[string]any
	if err := json.Unmarshal(raw, &first); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	v := reconcileView{Detail: first, Counts: map[string]int{}}
	v.RunID, _ = first["run_id"].(string)
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
		if err := printJSON(stdout, v); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "run %s: %s  remove=%d invite=%d update=%d report=%d\n", v.RunID, v.Status,
			v.Counts["remove"], v.Counts["invite"], v.Counts["update"], v.Counts["report"])
		if v.Halted != "" && v.Status == "halted" {
			fmt.Fprintf(stdout, "  halted by the brakes: %s\n  review: jml reconcile plan %s\n  apply exactly this plan: jml approve %s (expires %v)\n",
				v.Halted, v.RunID, v.RunID, v.Expires)
		} else if v.Halted != "" {
			fmt.Fprintf(stdout, "  %s\n", v.Halted)
		}
	}
	if v.Status == "halted" {
		return withCode(exitHalted, nil)
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
	b.drawPhases("", []string{"members", "teams", "invites", "directory", "apply"}, done, total)
}

// drawPhases draws a prefix and each phase's done/total.
func (b *bar) drawPhases(prefix string, phases []string, done, total map[string]int) {
	if !b.tty {
		return
	}
	var parts []string
	if prefix != "" {
		parts = append(parts, prefix)
	}
	for _, ph := range phases {
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
