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
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("roster import: %w", err)
	}
	defer f.Close()
	// Validate locally first, one row at a time: errors name the file's lines.
	if _, err := roster.Scan(file, f, nil); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("roster import: %w", err)
	}
	when := time.Time{}
	if *asOf != "" {
		if when, err = time.Parse(time.RFC3339, *asOf); err != nil {
			return fmt.Errorf("roster import: --as-of %q: want RFC 3339 (e.g. 2026-11-28T10:00:00Z)", *asOf)
		}
	} else if fi, err := f.Stat(); err == nil {
		when = fi.ModTime()
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	q := url.Values{"as_of": {when.UTC().Format(time.RFC3339)}, "full": {fmt.Sprint(*full)}, "dry_run": {fmt.Sprint(*dry)}}
	var res roster.Result
	// The file itself is streamed: the server validates it again and
	// imports it row by row.
	ct := "text/csv"
	if strings.HasSuffix(strings.ToLower(file), ".json") {
		ct = "application/json"
	}
	if err := c.doReader(ctx, http.MethodPost, "/v1/roster/import", q, f, ct, &res); err != nil {
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
