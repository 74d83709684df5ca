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
	"net/http"
	"net/url"
	"os"
	"path/filepath"
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
	all := fs.Bool("all", false, "plan everyone (a dry-run reconcile)")
	polFile := fs.String("policy", "", "with --all: preview this policy file instead of the one in force")
	if err := fs.Parse(args); err != nil {
		return err
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
		var v map[string]any
		if err := c.doBody(ctx, http.MethodPost, "/v1/plan/all", nil, body, &v); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, v)
		}
		counts, _ := json.Marshal(v["counts"])
		fmt.Fprintf(stdout, "run %v (dry run): %v members, %v people; changes %s\n", v["run_id"], v["members"], v["people"], counts)
		if h, _ := v["halted"].(string); h != "" {
			fmt.Fprintln(stdout, h)
		}
		fmt.Fprintf(stdout, "details: jml reconcile plan %v\n", v["run_id"])
		return nil
	}
	if *email == "" {
		return errors.New("plan: --email or --all is required")
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var v map[string]any
	if err := c.do(ctx, http.MethodGet, "/v1/plan", url.Values{"email": {*email}}, &v); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "%s  status=%v  outcome=%v\n", *email, v["status"], v["outcome"])
	if r, _ := v["reason"].(string); r != "" {
		fmt.Fprintf(stdout, "  reason: %s\n", r)
	}
	d, _ := json.Marshal(v["desired"])
	a, _ := json.Marshal(v["actual"])
	fmt.Fprintf(stdout, "  desired: %s\n  actual:  %s\n", d, a)
	steps, _ := v["steps"].([]any)
	if len(steps) == 0 {
		fmt.Fprintln(stdout, "  no steps: in sync")
	}
	for i, s := range steps {
		m, _ := s.(map[string]any)
		fmt.Fprintf(stdout, "  %d. %v", i+1, m["action"])
		for _, k := range []string{"team", "role", "via", "token"} {
			if x, ok := m[k]; ok && x != "" {
				fmt.Fprintf(stdout, " %s=%v", k, x)
			}
		}
		fmt.Fprintln(stdout)
	}
	if notes, _ := v["notes"].([]any); len(notes) > 0 {
		for _, n := range notes {
			fmt.Fprintf(stdout, "  note: %v\n", n)
		}
	}
	return nil
}

// cmdSimple runs one admin call and prints its JSON answer.
func cmdSimple(method, path string, q func(fs *flag.FlagSet) func() (url.Values, error)) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := flag.NewFlagSet(strings.TrimPrefix(path, "/v1/"), flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Bool("json", true, "print one JSON object (the default)")
		var query func() (url.Values, error)
		if q != nil {
			query = q(fs)
		}
		if err := fs.Parse(args); err != nil {
			return err
		}
		var vals url.Values
		if query != nil {
			var err error
			if vals, err = query(); err != nil {
				return err
			}
		}
		c, err := newAdminClient()
		if err != nil {
			return err
		}
		var v any
		if err := c.do(ctx, method, path, vals, &v); err != nil {
			return err
		}
		return printJSON(stdout, v)
	}
}

var (
	cmdReplicas = cmdSimple(http.MethodGet, "/v1/replicas", nil)
	cmdResume   = cmdSimple(http.MethodPost, "/v1/resume", nil)
	cmdStatus   = cmdSimple(http.MethodGet, "/v1/status", nil)
)

// cmdPause pauses every mutation and returns once every live replica has
// confirmed it (none sends a mutation any more, none has one in flight); it
// names the replicas that did not confirm in time and fails.
func cmdPause(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pause", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("json", true, "print one JSON object (the default)")
	wait := fs.Duration("wait", 15*time.Second, "how long to wait for every live replica to confirm (at most 25s)")
	if err := fs.Parse(args); err != nil {
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
	if err := printJSON(stdout, pretty); err != nil {
		return err
	}
	if !v.Complete {
		return fmt.Errorf("pause is stored, but %d live replica(s) did not confirm it within %s: %s (they may still send mutations; check them, then run jml pause again)",
			len(v.Missing), *wait, strings.Join(v.Missing, ", "))
	}
	return nil
}

func cmdApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("approve: RUN_ID is required (a halted reconcile run, or \"brakes\" for event-driven removals)")
	}
	id := args[0]
	return cmdSimple(http.MethodPost, "/v1/approve", func(*flag.FlagSet) func() (url.Values, error) {
		return func() (url.Values, error) { return url.Values{"run_id": {id}}, nil }
	})(ctx, args[1:], stdout, stderr)
}

func cmdEvidence(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cmdSimple(http.MethodGet, "/v1/evidence", func(fs *flag.FlagSet) func() (url.Values, error) {
		email := fs.String("email", "", "the person's email")
		return func() (url.Values, error) {
			if *email == "" {
				return nil, errors.New("evidence: --email is required")
			}
			return url.Values{"email": {*email}}, nil
		}
	})(ctx, args, stdout, stderr)
}

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("dlq: list | replay SEQ|all")
	}
	switch args[0] {
	case "list":
		return cmdSimple(http.MethodGet, "/v1/dlq", nil)(ctx, args[1:], stdout, stderr)
	case "replay":
		if len(args) < 2 {
			return errors.New("dlq replay: SEQ or all is required")
		}
		seq := args[1]
		return cmdSimple(http.MethodPost, "/v1/dlq/replay", func(*flag.FlagSet) func() (url.Values, error) {
			return func() (url.Values, error) { return url.Values{"seq": {seq}}, nil }
		})(ctx, args[2:], stdout, stderr)
	}
	return fmt.Errorf("dlq: unknown subcommand %q (list | replay)", args[0])
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
