package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/policy"
)

// adminClient talks to a running instance's admin API.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// newAdminClient finds the admin API: JML_ADMIN_ADDR when set, else the address
// `jml run` wrote into the data dir, else the default. Its token is
// JML_ADMIN_TOKEN (or JML_ADMIN_TOKEN_FILE), else the one generated into
// $JML_DATA_DIR/admin.token by a loopback `jml run` or worker.
func newAdminClient() (*adminClient, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, err
	}
	addr := cfg.AdminAddr
	if _, set := os.LookupEnv("JML_ADMIN_ADDR"); !set {
		if b, err := os.ReadFile(filepath.Join(cfg.DataDir, adminAddrFile)); err == nil {
			addr = strings.TrimSpace(string(b))
		}
	}
	token, err := cliAdminToken(cfg)
	if err != nil {
		return nil, err
	}
	return &adminClient{base: "http://" + addr, token: token, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// cliAdminToken is JML_ADMIN_TOKEN, else the data dir's generated token, else
// "" (the admin API then answers 401 and the error says what to set).
func cliAdminToken(cfg config.Common) (string, error) {
	if tok := strings.TrimSpace(cfg.AdminToken); tok != "" {
		return tok, nil
	}
	tok, err := config.ReadLocalAdminToken(cfg.DataDir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return tok, err
}

func (c *adminClient) do(ctx context.Context, method, path string, q url.Values, out any) error {
	return c.doBody(ctx, method, path, q, nil, out)
}

func (c *adminClient) doBody(ctx context.Context, method, path string, q url.Values, body []byte, out any) error {
	if body == nil {
		return c.doReader(ctx, method, path, q, nil, "", out)
	}
	return c.doReader(ctx, method, path, q, bytes.NewReader(body), "application/json", out)
}

// doReader is doBody with a streamed body of the given content type.
func (c *adminClient) doReader(ctx context.Context, method, path string, q url.Values, rd io.Reader, contentType string, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is `jml run` or the worker running with the same JML_ADMIN_ADDR?)", c.base, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(answer, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(answer))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.Error += " (set JML_ADMIN_TOKEN or JML_ADMIN_TOKEN_FILE to your operator token; on the machine of `jml run` the CLI reads $JML_DATA_DIR/admin.token)"
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	return json.Unmarshal(answer, out)
}

// printJSON writes v as one JSON object.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "the person's email")
	asJSON := fs.Bool("json", false, "print one JSON object")
	all := fs.Bool("all", false, "plan everyone (a dry-run reconcile, run as a job)")
	polFile := fs.String("policy", "", "with --all: preview this policy file instead of the one in force")
	detailed := fs.Bool("detailed-exitcode", false, "exit 4 when there are changes to make, 3 when they would halt (or a pause or the brakes hold them), 0 when in sync")
	detach := fs.Bool("detach", false, "with --all: start the job and return at once with its id")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	if *all == (*email != "") {
		return usageErrorf("plan: give exactly one of --email E or --all")
	}
	if *all {
		var body []byte
		if *polFile != "" {
			b, err := os.ReadFile(*polFile)
			if err != nil {
				return fmt.Errorf("plan: %w", err)
			}
			if _, err := policy.Parse(*polFile, b); err != nil {
				return err
			}
			body = b
		}
		c, err := newAdminClient()
		if err != nil {
			return err
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		raw, job, err := longCall(ctx, c, http.MethodPost, "/v1/plan/all", nil, rd, "application/yaml", *detach, stderr)
		if err != nil {
			return err
		}
		if job != nil {
			return printDetached(stdout, *asJSON, job)
		}
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("plan --all: %w", err)
		}
		if *asJSON {
			if err := printJSON(stdout, v); err != nil {
				return err
			}
		} else {
			counts, _ := json.Marshal(v["counts"])
			fmt.Fprintf(stdout, "run %v (dry run): %v members, %v people; changes %s\n", v["run_id"], v["members"], v["people"], counts)
			if h, _ := v["halted"].(string); h != "" {
				fmt.Fprintln(stdout, h)
			}
			fmt.Fprintf(stdout, "details: jml reconcile plan %v\n", v["run_id"])
		}
		if !*detailed {
			return nil
		}
		if h, _ := v["halted"].(string); h != "" {
			return withCode(exitHalted, nil)
		}
		if cm, _ := v["counts"].(map[string]any); cm != nil {
			for _, k := range []string{"remove", "invite", "update"} {
				if n, _ := cm[k].(float64); n > 0 {
					return withCode(exitChanges, nil)
				}
			}
		}
		return nil
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/v1/plan", url.Values{"email": {*email}}, &raw); err != nil {
		return err
	}
	var v planView
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if *asJSON {
		var pretty any
		_ = json.Unmarshal(raw, &pretty)
		if err := printJSON(stdout, pretty); err != nil {
			return err
		}
	} else {
		v.print(stdout)
	}
	if !*detailed {
		return nil
	}
	switch {
	case len(v.Steps) > 0 && (v.Safety.Paused || v.Safety.BrakesHalted):
		return withCode(exitHalted, nil)
	case len(v.Steps) > 0 || len(v.Pending) > 0:
		return withCode(exitChanges, nil)
	}
	return nil
}

// planView is GET /v1/plan (internal/app.PlanView).
type planView struct {
	Email   string `json:"email"`
	Person  string `json:"person"`
	Known   bool   `json:"known"`
	Status  string `json:"status"`
	Desired struct {
		Status         string            `json:"status"`
		OrgRole        string            `json:"org_role"`
		Teams          map[string]string `json:"teams"`
		EffectiveTeams map[string]string `json:"effective_teams"`
		OrgRoleFrom    string            `json:"org_role_from"`
		TeamsFrom      map[string]string `json:"teams_from"`
	} `json:"desired"`
	Actual struct {
		Present bool              `json:"present"`
		OrgRole string            `json:"org_role"`
		Pending bool              `json:"pending"`
		Teams   map[string]string `json:"teams"`
	} `json:"actual"`
	Steps []struct {
		Action string `json:"action"`
		Change string `json:"change"`
		Rule   string `json:"rule"`
	} `json:"steps"`
	Outcome string   `json:"outcome"`
	Reason  string   `json:"reason"`
	Notes   []string `json:"notes"`
	Pending []struct {
		ID          string    `json:"id"`
		Type        string    `json:"type"`
		Field       string    `json:"field"`
		Status      string    `json:"status"`
		EffectiveAt time.Time `json:"effective_at"`
	} `json:"pending"`
	Safety struct {
		Paused       bool   `json:"paused"`
		PausedBy     string `json:"paused_by"`
		BrakesHalted bool   `json:"brakes_halted"`
		Error        string `json:"error"`
	} `json:"safety"`
}

// print renders the plan for people: what matters first.
func (v planView) print(w io.Writer) {
	fmt.Fprintf(w, "%s", v.Email)
	if v.Person != "" {
		fmt.Fprintf(w, " (%s)", v.Person)
	}
	fmt.Fprintf(w, "  status=%s  outcome=%s\n", orDash(v.Status), v.Outcome)
	switch v.Outcome {
	case "unknown_person":
		fmt.Fprintln(w, "  UNKNOWN PERSON: no event or roster row names this email; nothing will change until one does")
	case "needs_human":
		fmt.Fprintf(w, "  NEEDS A HUMAN: %s\n", v.Reason)
	default:
		if v.Reason != "" {
			fmt.Fprintf(w, "  reason: %s\n", v.Reason)
		}
	}
	if v.Known && v.Desired.OrgRole != "" {
		fmt.Fprintf(w, "  desired: org role %s", v.Desired.OrgRole)
		if v.Desired.OrgRoleFrom != "" {
			fmt.Fprintf(w, "  ← %s", v.Desired.OrgRoleFrom)
		}
		fmt.Fprintln(w)
		for _, slug := range slices.Sorted(maps.Keys(v.Desired.Teams)) {
			eff := v.Desired.EffectiveTeams[slug]
			fmt.Fprintf(w, "    team %-20s effective %-11s", slug, orDash(eff))
			if eff != "" && v.Desired.Teams[slug] != "" && v.Desired.Teams[slug] != eff {
				fmt.Fprintf(w, " (policy says %s; the org role gives more)", v.Desired.Teams[slug])
			}
			if from := v.Desired.TeamsFrom[slug]; from != "" {
				fmt.Fprintf(w, "  ← %s", from)
			}
			fmt.Fprintln(w)
		}
	} else if v.Known && v.Desired.Status == "" {
		fmt.Fprintln(w, "  desired: unknown (no event has set the person's status yet)")
	} else if v.Known {
		fmt.Fprintf(w, "  desired: no access (%s)\n", v.Desired.Status)
	}
	if v.Actual.Present {
		kind := "member"
		if v.Actual.Pending {
			kind = "pending invite"
		}
		fmt.Fprintf(w, "  actual:  %s, org role %s", kind, v.Actual.OrgRole)
		if len(v.Actual.Teams) > 0 {
			var ts []string
			for _, slug := range slices.Sorted(maps.Keys(v.Actual.Teams)) {
				ts = append(ts, slug+":"+orDash(v.Actual.Teams[slug]))
			}
			fmt.Fprintf(w, ", teams %s", strings.Join(ts, ", "))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "  actual:  no member or invite in Sentry")
	}
	switch {
	case len(v.Steps) > 0:
		fmt.Fprintln(w, "  steps:")
	case v.Known && v.Status != "" && v.Reason == "" && (v.Outcome == "in_sync" || v.Outcome == "planned"):
		fmt.Fprintln(w, "  no steps: in sync")
	default:
		fmt.Fprintln(w, "  no steps")
	}
	for i, s := range v.Steps {
		fmt.Fprintf(w, "    %d. %s", i+1, s.Change)
		if s.Rule != "" {
			fmt.Fprintf(w, "  ← %s", s.Rule)
		}
		fmt.Fprintln(w)
	}
	for _, n := range v.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	for _, p := range v.Pending {
		fmt.Fprintf(w, "  pending: %s sets %s=%s at %s (cancel: jml pending cancel %s)\n", p.Type, p.Field, orDash(p.Status),
			p.EffectiveAt.Local().Format(time.DateTime), p.ID)
	}
	switch {
	case v.Safety.Error != "":
		fmt.Fprintf(w, "  safety: state unreadable (%s): every mutation is held\n", v.Safety.Error)
	case v.Safety.Paused:
		fmt.Fprintf(w, "  safety: PAUSED by %s: no step is applied until jml resume\n", orDash(v.Safety.PausedBy))
	}
	if v.Safety.BrakesHalted {
		fmt.Fprintln(w, "  safety: BRAKES HALTED: removals wait for jml approve brakes")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cmdPause pauses every mutation and returns once every live replica has
// confirmed it (none sends a mutation any more, none has one in flight); it
// names the replicas that did not confirm in time and fails.
func cmdPause(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pause", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	wait := fs.Duration("wait", 15*time.Second, "how long to wait for every live replica to confirm (at most 25s)")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var v struct {
		Complete bool     `json:"complete"`
		Missing  []string `json:"missing"`
	}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/v1/pause", url.Values{"wait": {wait.String()}}, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	var pretty any
	_ = json.Unmarshal(raw, &pretty)
	if *asJSON {
		if err := printJSON(stdout, pretty); err != nil {
			return err
		}
	} else {
		printText(stdout, pretty)
	}
	if !v.Complete {
		return withCode(exitPauseIncomplete, fmt.Errorf("pause is stored, but %d live replica(s) did not confirm it within %s: %s (they may still send mutations; check them, then run jml pause again)",
			len(v.Missing), *wait, strings.Join(v.Missing, ", ")))
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
