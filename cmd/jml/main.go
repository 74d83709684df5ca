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
	"os/signal"
	"syscall"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/workerproc"
)

const usage = `jml — joiner/mover/leaver automation for Sentry

Usage:
  jml run                         run everything in one process (embedded NATS, sandbox Sentry unless JML_SENTRY_* is set)
  jml sandbox [-addr A] [-seed F] serve the Sentry API sandbox alone
  jml worker                      one worker replica of the production split (same as cmd/worker; needs JML_NATS_URL, JML_REDIS_URL, JML_SENTRY_*)
  jml send-sample TYPE --email E  sign and send a sample generic event (TYPE: leaver, joiner, mover, suspend, rehire, update)
  jml doctor                      check the configuration, NATS, the coordination store and the Sentry token
  jml plan --email E [--json]     desired vs actual access and the steps convergence would take (changes nothing)
  jml pause [--wait 15s] | jml resume  stop / restart all Sentry mutations fleet-wide (ingestion continues);
                                  pause answers once every live replica confirmed it, else names them and fails
  jml replicas                    the live replicas that can change Sentry, and the pause/brake revision each enforces
  jml approve brakes|RUN_ID       approve halted brakes (brakes.approvals: 2 needs two operators), or apply a halted reconcile run
  jml reconcile [--dry-run] [--json]  bring the whole org back to policy (halts above the removal brakes)
  jml reconcile approve|plan RUN_ID   apply (now) or show a halted run's stored plan
  jml roster import FILE [--as-of T] [--full]  import an HR roster (CSV or JSON) as desired state
  jml access review [--json|--csv] [--sign]  every member and directory person's access, the policy rule behind each grant;
                                  --sign stores it as an evidence record signed off by your operator name
  jml tokens hygiene [--revoke]       org auth tokens unused, too old, or whose creator left
  jml bench reconcile --members N --teams N [--drift F] [--json]  reconcile benchmark (sandbox in its own process)
  jml evidence --email E          the person's evidence records (hash-chained audit log)
  jml evidence export --from T --to T [--out FILE]  JSON Lines of the records' hashed bytes and signed anchors
  jml evidence verify [FILE] [--key PUB]  check an export (or the live log): hashes, links, anchors; names the first bad line
  jml evidence key                the public key that signs the chain head (give it to auditors)
  jml report deprovisioning --from T [--to T] [--sla 1h] [--format html|csv|json] [--sample 25 --seed N] [--out FILE]
                                  per leaver: HR effective time, accepted, removal confirmed, time to revoke, SLA met or why not
  jml report inactive [--days 90] [--format json|csv] [--out FILE]  members with no Sentry login in that time
  jml dlq list | replay SEQ|all   dead letters, and replaying them
  jml status                      what the running instance is connected to
  jml unresolved                  events whose person could not be identified (acknowledged, never dropped)
  jml sources arm gusto [--for 10m]  open /hooks/gusto for exactly one verification request (fleet-wide)
  jml sources show gusto          show Gusto's signing key once (received in its verification request)
  jml bench ingest|revoke [--json] measure ingest speed and time to revoke (see docs/benchmarks.md)
  jml version

Configuration is read from JML_* environment variables; see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "jml:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("unknown command; run `jml help`")

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "sandbox":
		return cmdSandbox(ctx, args[1:], stdout, stderr)
	case "worker":
		return workerproc.Run(ctx, stderr)
	case "send-sample":
		return cmdSendSample(ctx, args[1:], stdout, stderr)
	case "doctor":
		return cmdDoctor(ctx, args[1:], stdout, stderr)
	case "plan":
		return cmdPlan(ctx, args[1:], stdout, stderr)
	case "pause":
		return cmdPause(ctx, args[1:], stdout, stderr)
	case "replicas":
		return cmdReplicas(ctx, args[1:], stdout, stderr)
	case "resume":
		return cmdResume(ctx, args[1:], stdout, stderr)
	case "approve":
		return cmdApprove(ctx, args[1:], stdout, stderr)
	case "evidence":
		return cmdEvidenceAll(ctx, args[1:], stdout, stderr)
	case "reconcile":
		return cmdReconcile(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdReport(ctx, args[1:], stdout, stderr)
	case "roster":
		return cmdRoster(ctx, args[1:], stdout, stderr)
	case "access":
		return cmdAccess(ctx, args[1:], stdout, stderr)
	case "tokens":
		return cmdTokens(ctx, args[1:], stdout, stderr)
	case "dlq":
		return cmdDLQ(ctx, args[1:], stdout, stderr)
	case "status":
		return cmdStatus(ctx, args[1:], stdout, stderr)
	case "bench":
		if len(args) > 1 && args[1] == "reconcile" {
			return cmdBenchReconcile(ctx, args[1:], stdout, stderr)
		}
		return cmdBench(ctx, args[1:], stdout, stderr)
	case "unresolved":
		return cmdSimple(http.MethodGet, "/v1/unresolved", nil)(ctx, args[1:], stdout, stderr)
	case "sources":
		switch {
		case len(args) >= 3 && args[1] == "show" && args[2] == "gusto":
			return cmdSimple(http.MethodGet, "/v1/sources/gusto/key", nil)(ctx, args[3:], stdout, stderr)
		case len(args) >= 3 && args[1] == "arm" && args[2] == "gusto":
			return cmdSimple(http.MethodPost, "/v1/sources/gusto/arm", armFlags)(ctx, args[3:], stdout, stderr)
		}
		return errors.New("sources: usage: jml sources arm gusto [--for 10m] | jml sources show gusto")
	case "version":
		fmt.Fprintln(stdout, "jml", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%q: %w", args[0], errUsage)
}

// armFlags reads `jml sources arm gusto --for D`.
func armFlags(fs *flag.FlagSet) func() (url.Values, error) {
	d := fs.Duration("for", 10*time.Minute, "how long the route stays open for the one verification request (at most 1h)")
	return func() (url.Values, error) {
		if *d <= 0 || *d > time.Hour {
			return nil, errors.New("sources arm: --for must be between 1s and 1h")
		}
		return url.Values{"for": {d.String()}}, nil
	}
}
