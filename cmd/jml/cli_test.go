package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

// noSideEffects points the CLI at an admin API that counts every request it
// gets, and at an empty data dir; it returns the count.
func noSideEffects(t *testing.T) *atomic.Int64 {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no request expected", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("JML_ADMIN_ADDR", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("JML_ADMIN_TOKEN", "test-token-0123456789")
	t.Setenv("JML_DATA_DIR", t.TempDir())
	// Anything that would start a process or reach out fails fast instead.
	t.Setenv("JML_NATS_URL", "nats://127.0.0.1:1")
	t.Setenv("JML_HTTP_ADDR", "127.0.0.1:1")
	return &calls
}

// TestHelpOnEveryCommand: --help, -h and `jml help CMD` on every command and
// group print its usage on stdout and exit 0, without one admin request
// (before, `jml worker --help` started a worker and `jml dlq replay --help`
// sent a POST), and whatever other arguments stand around them.
func TestHelpOnEveryCommand(t *testing.T) {
	calls := noSideEffects(t)
	for _, c := range commands() {
		words := strings.Fields(c.path)
		for _, args := range [][]string{
			append(append([]string{}, words...), "--help"),
			append(append([]string{}, words...), "-h"),
			append(append([]string{}, words...), "ARG", "--json", "-h"),
			append([]string{"help"}, words...),
		} {
			var out, errb bytes.Buffer
			err := dispatch(context.Background(), args, &out, &errb)
			if code := exitCode(err); code != exitOK {
				t.Errorf("jml %s: exit %d (%v), want 0; stderr %q", strings.Join(args, " "), code, err, errb.String())
			}
			if !strings.Contains(out.String(), "jml "+c.path) {
				t.Errorf("jml %s: usage does not name the command:\n%s", strings.Join(args, " "), out.String())
			}
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("--help sent %d admin requests", n)
	}
	var out bytes.Buffer
	if err := dispatch(context.Background(), []string{"--help"}, &out, &out); err != nil || !strings.Contains(out.String(), "Exit status") {
		t.Fatalf("jml --help: %v\n%s", err, out.String())
	}
}

// TestUsageErrorsExit2: unknown commands, subcommands and flags, missing
// arguments and conflicting flags are usage errors (exit 2), and send nothing.
func TestUsageErrorsExit2(t *testing.T) {
	calls := noSideEffects(t)
	for _, args := range [][]string{
		{},
		{"nope"},
		{"dlq"},
		{"dlq", "nope"},
		{"reconcile", "--no-such-flag"},
		{"reconcile", "extra"},
		{"approve"},
		{"reconcile", "approve"},
		{"dlq", "replay"},
		{"pending", "cancel"},
		{"unresolved", "link", "okta", "ev1"},
		{"plan"},
		{"plan", "--email", "a@b.c", "--all"},
		{"evidence"},
		{"roster", "import"},
		{"access", "review", "--json", "--csv"},
		{"sources", "arm", "gusto", "--for", "2h"},
		{"jobs", "cancel"},
		{"worker", "extra"},
		{"help", "nope"},
		{"version", "extra"},
		{"send-sample"},
		{"send-sample", "nope", "--email", "a@b.c"},
		{"send-sample", "leaver"},
	} {
		var out, errb bytes.Buffer
		err := dispatch(context.Background(), args, &out, &errb)
		if code := exitCode(err); code != exitUsage {
			t.Errorf("jml %s: exit %d (%v), want 2", strings.Join(args, " "), code, err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("usage errors sent %d admin requests", n)
	}
}

// TestExitCodes: the codes README documents map from the errors commands return.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{os.ErrNotExist, 1},
		{usageErrorf("x"), 2},
		{withCode(exitHalted, nil), 3},
		{withCode(exitChanges, nil), 4},
		{withCode(exitPauseIncomplete, os.ErrDeadlineExceeded), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	// The README's table says the same.
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for code, what := range map[int]string{2: "usage", 3: "halted", 4: "changes pending"} {
		if !regexp.MustCompile("(?m)^\\| `" + string(rune('0'+code)) + "` \\|.*" + what).Match(b) {
			t.Errorf("README's exit status table lacks %d (%s)", code, what)
		}
	}
}

// readmeCommand matches `jml …` in README code spans and code blocks (after
// `go run ./cmd/jml` too).
var readmeCommand = regexp.MustCompile("(?:`|^\\s*|go run \\./cmd/)jml ([a-z][a-z-]*(?: [a-z][a-z-]*)*)")

// TestREADMECommandsExist: every `jml …` command the README shows is in the
// command table, and its --help works (exit 0, usage printed, nothing sent).
func TestREADMECommandsExist(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	calls := noSideEffects(t)
	cmds := commands()
	seen := map[string]bool{}
	for _, m := range readmeCommand.FindAllStringSubmatch(string(b), -1) {
		words := strings.Fields(m[1])
		c, _, ok := find(cmds, words)
		if !ok {
			t.Errorf("README shows `jml %s`, which is no command", m[1])
			continue
		}
		if seen[c.path] {
			continue
		}
		seen[c.path] = true
		var out, errb bytes.Buffer
		err := dispatch(context.Background(), append(strings.Fields(c.path), "--help"), &out, &errb)
		if exitCode(err) != exitOK || !strings.Contains(out.String(), "jml "+c.path) {
			t.Errorf("jml %s --help: %v\n%s%s", c.path, err, out.String(), errb.String())
		}
	}
	if len(seen) < 20 {
		t.Fatalf("found only %d commands in the README: %v (is the pattern still right?)", len(seen), seen)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("--help sent %d admin requests", n)
	}
	// Every command of the table is reachable from the README.
	for _, c := range cmds {
		if c.run != nil && !seen[c.path] && c.path != "help" {
			t.Errorf("`jml %s` is not in the README", c.path)
		}
	}
}
