package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/roster"
)

// cmdRoster: jml roster import FILE [--as-of TIME] [--full] [--dry-run] [--json].
func cmdRoster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "import" {
		return errors.New("roster: usage: jml roster import FILE [--as-of TIME] [--full] [--dry-run] [--json]")
	}
	args = args[1:]
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("roster import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asOf := fs.String("as-of", "", "the time the roster describes (RFC 3339; default: the file's modification time)")
	full := fs.Bool("full", false, "mark people absent from the file as terminated")
	dry := fs.Bool("dry-run", false, "validate and count, change nothing")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if file == "" && fs.NArg() > 0 {
		file = fs.Arg(0)
	}
	if file == "" {
		return errors.New("roster import: FILE is required")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("roster import: %w", err)
	}
	// Validate locally first: errors name the file's lines.
	rows, err := roster.Parse(file, bytes.NewReader(b))
	if err != nil {
		return err
	}
	when := time.Time{}
	if *asOf != "" {
		if when, err = time.Parse(time.RFC3339, *asOf); err != nil {
			return fmt.Errorf("roster import: --as-of %q: want RFC 3339 (e.g. 2026-11-28T10:00:00Z)", *asOf)
		}
	} else if fi, err := os.Stat(file); err == nil {
		when = fi.ModTime()
	}
	persons := make([]any, len(rows))
	for i, r := range rows {
		persons[i] = r.Person
	}
	body, err := json.Marshal(persons)
	if err != nil {
		return err
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	q := url.Values{"as_of": {when.UTC().Format(time.RFC3339)}, "full": {fmt.Sprint(*full)}, "dry_run": {fmt.Sprint(*dry)}}
	var res roster.Result
	if err := c.doBody(ctx, http.MethodPost, "/v1/roster/import", q, body, &res); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "%s: %d rows, %d applied, %d unchanged (older or equal), %d terminated (--full), as of %s\n",
		file, res.Rows, res.Applied, res.Unchanged, res.Terminated, res.AsOf.Format(time.RFC3339))
	fmt.Fprintln(stdout, "desired state only: run `jml reconcile` (or wait for its schedule) to apply it, under the brakes")
	return nil
}
