package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// leaf is the type of every command: it parses its own arguments (those after
// its name) with a flag.FlagSet and writes results to stdout, progress and
// diagnostics to stderr. Adding a command is one leaf in its own file and one
// line in commands().
type leaf func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// command is one entry of the command table: path is the words that name it
// ("reconcile approve"), usage the arguments it takes, run nil for a group
// that only has subcommands.
type command struct {
	path    string
	usage   string
	summary string
	run     leaf
}

// Exit status of jml (README "Exit status"; DESIGN's CLI contract).
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2 // a usage error: unknown command or flag, missing argument
	exitHalted  = 3 // halted by the brakes, waiting for an approval
	exitChanges = 4 // --detailed-exitcode: the plan has changes to make
	// exitPauseIncomplete: the pause is stored but not every live replica
	// confirmed it — an error (DESIGN's exit statuses are 0–4).
	exitPauseIncomplete = exitError
)

// exitErr carries an exit status; its message may be empty when the command
// already said everything on stdout (a halted run, a plan with changes).
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitErr) Unwrap() error { return e.err }

// usageErrorf is a usage error (exit 2).
func usageErrorf(format string, a ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// withCode gives err the exit status code (nil err: a silent exit with code).
func withCode(code int, err error) error { return &exitErr{code: code, err: err} }

// exitCode maps an error returned by dispatch to the process's exit status.
func exitCode(err error) int {
	var e *exitErr
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &e):
		return e.code
	}
	return exitError
}

// parseFlags parses args with fs; a bad flag is a usage error (exit 2). The
// flag package has printed the reason and the flags already.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return withCode(exitOK, nil)
	}
	return &exitErr{code: exitUsage, err: err}
}

// commands is the command table, in the order `jml help` lists it.
func commands() []command {
	return []command{
		{"run", "", "run everything in one process (embedded NATS, sandbox Sentry unless JML_SENTRY_* is set)", cmdRun},
		{"sandbox", "[-addr A] [-seed F] [-rate-limit N] [-latency D]", "serve the Sentry API sandbox alone", cmdSandbox},
		{"worker", "", "one worker replica of the production split (same as cmd/worker; needs JML_NATS_URL, JML_REDIS_URL, JML_SENTRY_*)", cmdWorker},
		{"send-sample", "TYPE --email E [--id ID] [--event-id ID] [--department D] [--url U]", "sign and send a sample generic event (TYPE: leaver, joiner, mover, suspend, rehire, update)", cmdSendSample},
		{"doctor", "", "check the configuration, NATS, the coordination store and the Sentry token", cmdDoctor},
		{"status", "[--json]", "what the running instance is connected to", cmdStatus},
		{"plan", "--email E | --all [--policy F] [--json] [--detailed-exitcode] [--detach]", "desired vs actual access, the steps convergence would take and the rule behind each grant (changes nothing); --all is a dry-run reconcile, run as a job", cmdPlan},
		{"pause", "[--wait 15s] [--json]", "stop all Sentry mutations fleet-wide (ingestion continues); answers once every live replica confirmed it, else names them and exits 1", cmdPause},
		{"resume", "[--json]", "restart Sentry mutations", cmdResume},
		{"replicas", "[--json]", "the live replicas that can change Sentry, and the pause/brake revision each enforces", cmdReplicas},
		{"approve", "brakes|RUN_ID [--json]", "approve halted brakes (brakes.approvals: 2 needs two operators; exit 3 while waiting for the second), or apply a halted reconcile run", cmdApprove},
		{"reconcile", "[--dry-run] [--json] [--detach]", "bring the whole org back to policy, as a job (exit 3 when halted above the removal brakes)", cmdReconcile},
		{"reconcile approve", "RUN_ID [--json]", "approve a halted run and apply exactly its stored plan", cmdReconcileApprove},
		{"reconcile plan", "RUN_ID [--json]", "show a run's stored plan", cmdReconcilePlan},
		{"runs", "[--json] [--limit N]", "reconcile runs, halted ones first, with the reason they halted", cmdRuns},
		{"pending", "[--json] [--email E]", "future-dated changes (effective_at) waiting for their time", cmdPending},
		{"pending cancel", "ID [--json]", "cancel one future-dated change (recorded as evidence with the operator)", cmdPendingCancel},
		{"jobs", "[--json]", "long work on the instance (reconcile, plan --all, access review, roster import): state and progress", cmdJobs},
		{"jobs show", "ID [--json]", "one job, with its result once finished", cmdJobShow},
		{"jobs wait", "ID [--json]", "wait for a job (progress on a terminal) and print its result", cmdJobWait},
		{"jobs cancel", "ID [--json]", "cancel a running job", cmdJobCancel},
		{"roster", "", "HR rosters", nil},
		{"roster import", "FILE [--as-of T] [--full] [--dry-run] [--json] [--detach]", "import an HR roster (CSV or JSON) as desired state, as a job", cmdRoster},
		{"access", "", "access reviews", nil},
		{"access review", "[--json|--csv] [--detach] [--sign]", "every member's and directory person's access, the policy rule behind each grant, and whether policy agrees, as a job; --sign stores it as an evidence record signed off by your operator name", cmdAccess},
		{"tokens", "", "org auth tokens", nil},
		{"tokens hygiene", "[--revoke] [--json]", "org auth tokens unused, too old, or whose creator left", cmdTokens},
		{"evidence", "--email E [--json]", "the person's evidence records (hash-chained audit log)", cmdEvidence},
		{"evidence export", "--from T [--to T] [--out FILE]", "JSON Lines of the records' hashed bytes and the signed anchors (docs/evidence.md)", cmdEvidenceExport},
		{"evidence verify", "[FILE] [--key PUB|@FILE]", "check an export (or the live log): hashes, links, anchors; names the first bad line", cmdEvidenceVerify},
		{"evidence key", "", "the public key that signs the chain head (give it to auditors)", cmdEvidenceKey},
		{"report", "", "reports for auditors", nil},
		{"report deprovisioning", "--from T [--to T] [--sla 1h] [--format html|csv|json] [--sample N --seed S] [--out FILE]", "per leaver: HR effective time, accepted, removal confirmed, time to revoke, SLA met or why not", cmdReportDeprovisioning},
		{"report inactive", "[--days 90] [--format json|csv] [--out FILE]", "members with no Sentry login in that time (PCI DSS 8.2.6)", cmdReportInactive},
		{"dlq", "", "dead letters", nil},
		{"dlq list", "[--json]", "dead letters with their error", cmdDLQList},
		{"dlq replay", "SEQ|all [--json]", "put dead letters back on the stream", cmdDLQReplay},
		{"unresolved", "[--json]", "events whose person could not be identified (acknowledged, never dropped)", cmdUnresolved},
		{"unresolved link", "SOURCE EVENT_ID --email E [--json]", "identify an unresolved event's person by email and process it again (evidence records the operator)", cmdUnresolvedLink},
		{"unresolved dismiss", "SOURCE EVENT_ID [--json]", "remove an entry from the list without acting on it (logged with the operator)", cmdUnresolvedDismiss},
		{"sources", "", "webhook sources", nil},
		{"sources arm gusto", "[--for 10m] [--json]", "open /hooks/gusto for exactly one verification request (fleet-wide)", cmdSourcesArmGusto},
		{"sources show gusto", "[--json]", "show Gusto's signing key once (received in its verification request)", cmdSourcesShowGusto},
		{"bench", "", "benchmarks (docs/benchmarks.md)", nil},
		{"bench ingest", "[--json]", "measure ingest speed", cmdBenchIngest},
		{"bench revoke", "[--json]", "measure time to revoke", cmdBenchRevoke},
		{"bench reconcile", "--members N --teams N [--drift F] [--json]", "reconcile benchmark (sandbox in its own process)", cmdBenchReconcileLeaf},
		{"version", "", "print the version", cmdVersion},
		{"help", "[COMMAND]", "this text, or one command's usage", nil},
	}
}

// find returns the command whose path is the longest prefix of args, and the
// arguments after it.
func find(cmds []command, args []string) (command, []string, bool) {
	best, n := command{}, 0
	for _, c := range cmds {
		words := strings.Fields(c.path)
		if len(words) > len(args) || len(words) <= n || !slices.Equal(words, args[:len(words)]) {
			continue
		}
		best, n = c, len(words)
	}
	return best, args[n:], n > 0
}

// wantsHelp reports whether args ask for help (before a "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "--help", "-help":
			return true
		}
	}
	return false
}

// dispatch runs the command args name. `--help` or `-h` anywhere in a
// command's arguments prints its usage and runs nothing.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 {
		printUsage(stderr, cmds)
		return usageErrorf("a command is required; run `jml help`")
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		printUsage(stdout, cmds)
		return nil
	}
	if args[0] == "help" {
		if len(args) == 1 || wantsHelp(args[1:]) {
			printUsage(stdout, cmds)
			return nil
		}
		c, rest, ok := find(cmds, args[1:])
		if !ok || len(rest) > 0 {
			return usageErrorf("help: unknown command %q; run `jml help`", strings.Join(args[1:], " "))
		}
		printCommandUsage(stdout, cmds, c)
		return nil
	}
	c, rest, ok := find(cmds, args)
	if !ok {
		printUsage(stderr, cmds)
		return usageErrorf("unknown command %q; run `jml help`", args[0])
	}
	if wantsHelp(rest) {
		printCommandUsage(stdout, cmds, c)
		return nil
	}
	if c.run == nil {
		printCommandUsage(stderr, cmds, c)
		if len(rest) > 0 {
			return usageErrorf("%s: unknown subcommand %q", c.path, rest[0])
		}
		return usageErrorf("%s: a subcommand is required", c.path)
	}
	return c.run(ctx, rest, stdout, stderr)
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprint(w, "jml — joiner/mover/leaver automation for Sentry\n\nUsage:\n")
	for _, c := range cmds {
		if c.run == nil && c.path != "help" {
			continue
		}
		line := "jml " + c.path
		if c.usage != "" {
			line += " " + c.usage
		}
		fmt.Fprintf(w, "  %s\n      %s\n", line, c.summary)
	}
	fmt.Fprint(w, `
Every command takes --help (or -h): it prints the command's usage and does nothing else.
--json prints one JSON object on stdout; progress and logs go to stderr.

Exit status: 0 success (changes made or not), 1 error, 2 usage error, 3 halted by the
brakes or waiting for an approval, 4 changes pending (plan --detailed-exitcode),
5 pause stored but not confirmed by every live replica.

Configuration is read from JML_* environment variables; see README.md.
`)
}

// printCommandUsage prints one command's usage and its subcommands.
func printCommandUsage(w io.Writer, cmds []command, c command) {
	if c.run != nil || c.path == "help" {
		fmt.Fprintf(w, "Usage: jml %s", c.path)
		if c.usage != "" {
			fmt.Fprintf(w, " %s", c.usage)
		}
		fmt.Fprintf(w, "\n\n%s\n", c.summary)
	} else {
		fmt.Fprintf(w, "jml %s: %s\n", c.path, c.summary)
	}
	var subs []command
	for _, s := range cmds {
		if strings.HasPrefix(s.path, c.path+" ") {
			subs = append(subs, s)
		}
	}
	if len(subs) > 0 {
		fmt.Fprintln(w, "\nSubcommands:")
		for _, s := range subs {
			fmt.Fprintf(w, "  jml %s %s\n      %s\n", s.path, s.usage, s.summary)
		}
	}
	fmt.Fprintln(w, "\nExit status: 0 ok, 1 error, 2 usage error, 3 halted/needs approval, 4 changes pending (--detailed-exitcode). See README.md.")
}
