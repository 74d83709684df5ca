package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// cmdRuns: jml runs [--json] [--limit N] — reconcile runs, halted first.
func cmdRuns(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("runs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	limit := fs.Int("limit", 20, "at most this many runs (0: all)")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	if *limit < 0 {
		return usageErrorf("runs: --limit must be 0 or more")
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var v struct {
		Runs []struct {
			ID         string         `json:"run_id"`
			Status     string         `json:"status"`
			Reason     string         `json:"reason"`
			Trigger    string         `json:"trigger"`
			StartedAt  time.Time      `json:"started_at"`
			ExpiresAt  time.Time      `json:"expires_at"`
			ApprovedBy string         `json:"approved_by"`
			Counts     map[string]int `json:"counts"`
		} `json:"runs"`
	}
	var raw any
	if err := c.do(ctx, http.MethodGet, "/v1/runs", url.Values{"limit": {strconv.Itoa(*limit)}}, &raw); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, raw)
	}
	if err := remarshal(raw, &v); err != nil {
		return err
	}
	if len(v.Runs) == 0 {
		fmt.Fprintln(stdout, "no reconcile runs stored")
	}
	for _, r := range v.Runs {
		fmt.Fprintf(stdout, "%-28s %-8s %s  remove=%d invite=%d update=%d  %s", r.ID, r.Status, r.StartedAt.Local().Format(time.DateTime),
			r.Counts["remove"], r.Counts["invite"], r.Counts["update"], r.Trigger)
		switch {
		case r.Status == "halted":
			fmt.Fprintf(stdout, "\n    halted: %s\n    approve before %s: jml approve %s (review: jml reconcile plan %s)", orUnknown(r.Reason),
				r.ExpiresAt.Local().Format(time.DateTime), r.ID, r.ID)
		case r.ApprovedBy != "":
			fmt.Fprintf(stdout, "  approved by %s", r.ApprovedBy)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "(reason not stored: a run from before runs kept it)"
	}
	return s
}

// cmdPending: jml pending [--email E] [--json] — future-dated changes.
func cmdPending(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pending", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	email := fs.String("email", "", "only this person's changes")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var q url.Values
	if *email != "" {
		q = url.Values{"email": {*email}}
	}
	var raw any
	if err := c.do(ctx, http.MethodGet, "/v1/pending", q, &raw); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, raw)
	}
	var v struct {
		Pending []struct {
			ID          string    `json:"id"`
			Person      string    `json:"person"`
			Email       string    `json:"email"`
			Field       string    `json:"field"`
			Type        string    `json:"type"`
			Status      string    `json:"status"`
			EffectiveAt time.Time `json:"effective_at"`
		} `json:"pending"`
	}
	if err := remarshal(raw, &v); err != nil {
		return err
	}
	if len(v.Pending) == 0 {
		fmt.Fprintln(stdout, "no future-dated changes")
	}
	for _, p := range v.Pending {
		who := p.Email
		if who == "" {
			who = p.Person
		}
		fmt.Fprintf(stdout, "%s  %s  %-30s %s %s=%s  (cancel: jml pending cancel %s)\n", p.EffectiveAt.Local().Format(time.DateTime), p.ID, who, p.Type, p.Field, p.Status, p.ID)
	}
	return nil
}

var (
	cmdPendingCancel = simple{name: "pending cancel", method: http.MethodPost, path: "/v1/pending/cancel", pos: []string{"ID"},
		flags: oneArg("id")}.leaf()
	cmdUnresolvedDismiss = simple{name: "unresolved dismiss", method: http.MethodPost, path: "/v1/unresolved/dismiss",
		pos: []string{"SOURCE", "EVENT_ID"}, flags: twoArgs("source", "event_id")}.leaf()
	cmdUnresolvedLink = simple{name: "unresolved link", method: http.MethodPost, path: "/v1/unresolved/link",
		pos: []string{"SOURCE", "EVENT_ID"}, flags: func(fs *flag.FlagSet) func([]string) (url.Values, error) {
			email := fs.String("email", "", "the person's email (as in Sentry)")
			return func(pos []string) (url.Values, error) {
				if *email == "" {
					return nil, usageErrorf("unresolved link: --email is required")
				}
				return url.Values{"source": {pos[0]}, "event_id": {pos[1]}, "email": {*email}}, nil
			}
		}}.leaf()
)

func twoArgs(a, b string) func(*flag.FlagSet) func([]string) (url.Values, error) {
	return func(*flag.FlagSet) func([]string) (url.Values, error) {
		return func(pos []string) (url.Values, error) { return url.Values{a: {pos[0]}, b: {pos[1]}}, nil }
	}
}
