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
	"strings"
	"time"
)

// simple describes a command that is one admin API call.
type simple struct {
	name   string // as in the command table, for messages
	method string
	path   string
	// pos names the positional arguments it requires (before or after the flags).
	pos []string
	// flags defines the command's flags and returns how to build the query
	// from them and the positional arguments.
	flags func(fs *flag.FlagSet) func(pos []string) (url.Values, error)
	// text prints the answer for people (nil: printText).
	text func(w io.Writer, v any)
	// status turns the answer into the exit status (nil: success).
	status func(v any) error
	// long: the route may answer with a running job, which is followed to
	// its result.
	long bool
}

// leaf makes s a command: --json prints the answer as one JSON object,
// otherwise it is printed for people.
func (s simple) leaf() leaf {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := flag.NewFlagSet(s.name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		asJSON := fs.Bool("json", false, "print one JSON object")
		var query func([]string) (url.Values, error)
		if s.flags != nil {
			query = s.flags(fs)
		}
		pos, err := parseWithPositional(fs, args, len(s.pos))
		if err != nil {
			return err
		}
		if len(pos) < len(s.pos) {
			return usageErrorf("%s: %s is required", s.name, s.pos[len(pos)])
		}
		var vals url.Values
		if query != nil {
			if vals, err = query(pos); err != nil {
				return err
			}
		}
		c, err := newAdminClient()
		if err != nil {
			return err
		}
		var v any
		if s.long {
			raw, _, err := longCall(ctx, c, s.method, s.path, vals, nil, "", false, stderr)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &v); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		} else if err := c.do(ctx, s.method, s.path, vals, &v); err != nil {
			return err
		}
		switch {
		case *asJSON:
			err = printJSON(stdout, v)
		case s.text != nil:
			s.text(stdout, v)
		default:
			printText(stdout, v)
		}
		if err != nil {
			return err
		}
		if s.status != nil {
			return s.status(v)
		}
		return nil
	}
}

// parseWithPositional parses flags that may come before or after up to n
// positional arguments (`jml approve RUN_ID --json`, `jml approve --json RUN_ID`).
func parseWithPositional(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	var pos []string
	for len(pos) < n && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	rest := fs.Args()
	for len(pos) < n && len(rest) > 0 {
		pos, rest = append(pos, rest[0]), rest[1:]
		if err := parseFlags(fs, rest); err != nil {
			return nil, err
		}
		rest = fs.Args()
	}
	if len(rest) > 0 {
		return nil, usageErrorf("%s: unexpected argument %q", fs.Name(), rest[0])
	}
	return pos, nil
}

// printText prints a JSON answer for people: scalars as "key: value", lists
// of objects one line an item, nested objects indented.
func printText(w io.Writer, v any) { printTextIndent(w, v, "") }

func printTextIndent(w io.Writer, v any, indent string) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			switch val := x[k].(type) {
			case map[string]any:
				if len(val) == 0 {
					continue
				}
				fmt.Fprintf(w, "%s%s:\n", indent, k)
				printTextIndent(w, val, indent+"  ")
			case []any:
				fmt.Fprintf(w, "%s%s: %d\n", indent, k, len(val))
				printTextIndent(w, val, indent+"  ")
			case nil:
			default:
				fmt.Fprintf(w, "%s%s: %s\n", indent, k, scalar(val))
			}
		}
	case []any:
		for _, item := range x {
			fmt.Fprintf(w, "%s- %s\n", indent, inline(item))
		}
	default:
		fmt.Fprintf(w, "%s%s\n", indent, scalar(v))
	}
}

// inline renders one list item on one line: key=value pairs for an object.
func inline(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return scalar(v)
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] == nil || m[k] == "" {
			continue
		}
		parts = append(parts, k+"="+scalar(m[k]))
	}
	return strings.Join(parts, " ")
}

func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprint(x)
	case bool:
		return fmt.Sprint(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// oneArg puts the first positional argument into the query as key.
func oneArg(key string) func(*flag.FlagSet) func([]string) (url.Values, error) {
	return func(*flag.FlagSet) func([]string) (url.Values, error) {
		return func(pos []string) (url.Values, error) { return url.Values{key: {pos[0]}}, nil }
	}
}

var (
	cmdReplicas = simple{name: "replicas", method: http.MethodGet, path: "/v1/replicas"}.leaf()
	cmdResume   = simple{name: "resume", method: http.MethodPost, path: "/v1/resume"}.leaf()
	cmdStatus   = simple{name: "status", method: http.MethodGet, path: "/v1/status"}.leaf()
	cmdApprove  = simple{name: "approve", method: http.MethodPost, path: "/v1/approve", pos: []string{"RUN_ID (a halted reconcile run, or \"brakes\")"},
		flags: oneArg("run_id"), status: approveStatus, long: true}.leaf()
	cmdReconcileApprove = simple{name: "reconcile approve", method: http.MethodPost, path: "/v1/reconcile/approve", pos: []string{"RUN_ID"},
		flags: oneArg("run_id"), long: true}.leaf()
	cmdReconcilePlan = simple{name: "reconcile plan", method: http.MethodGet, path: "/v1/reconcile/plan", pos: []string{"RUN_ID"},
		flags: oneArg("run_id")}.leaf()
	cmdDLQList   = simple{name: "dlq list", method: http.MethodGet, path: "/v1/dlq"}.leaf()
	cmdDLQReplay = simple{name: "dlq replay", method: http.MethodPost, path: "/v1/dlq/replay", pos: []string{"SEQ or all"},
		flags: oneArg("seq")}.leaf()
	cmdUnresolved       = simple{name: "unresolved", method: http.MethodGet, path: "/v1/unresolved"}.leaf()
	cmdSourcesShowGusto = simple{name: "sources show gusto", method: http.MethodGet, path: "/v1/sources/gusto/key"}.leaf()
	cmdSourcesArmGusto  = simple{name: "sources arm gusto", method: http.MethodPost, path: "/v1/sources/gusto/arm", flags: armFlags}.leaf()
	cmdEvidence         = simple{name: "evidence", method: http.MethodGet, path: "/v1/evidence", flags: func(fs *flag.FlagSet) func([]string) (url.Values, error) {
		email := fs.String("email", "", "the person's email")
		return func([]string) (url.Values, error) {
			if *email == "" {
				return nil, usageErrorf("evidence: --email is required")
			}
			return url.Values{"email": {*email}}, nil
		}
	}}.leaf()
)

// approveStatus: approving the brakes with brakes.approvals: 2 leaves them
// halted until a second operator approves (exit 3).
func approveStatus(v any) error {
	m, _ := v.(map[string]any)
	if released, ok := m["released"].(bool); ok && !released {
		return withCode(exitHalted, fmt.Errorf("approval recorded; the brakes stay halted until %v distinct operators approve", m["approvals_needed"]))
	}
	return nil
}

// armFlags reads `jml sources arm gusto --for D`.
func armFlags(fs *flag.FlagSet) func([]string) (url.Values, error) {
	d := fs.Duration("for", 10*time.Minute, "how long the route stays open for the one verification request (at most 1h)")
	return func([]string) (url.Values, error) {
		if *d <= 0 || *d > time.Hour {
			return nil, usageErrorf("sources arm: --for must be between 1s and 1h")
		}
		return url.Values{"for": {d.String()}}, nil
	}
}

// remarshal decodes a generic JSON answer into out.
func remarshal(v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}
