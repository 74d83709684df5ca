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
	"time"

	"github.com/sentry-jml/sentry-jml/internal/roster"
)

// cmdRoster: jml roster import FILE [--as-of TIME] [--full] [--dry-run] [--json].
func cmdRoster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roster import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asOf := fs.String("as-of", "", "the time the roster describes (RFC 3339; default: the file's modification time)")
	full := fs.Bool("full", false, "mark people absent from the file as terminated")
	dry := fs.Bool("dry-run", false, "validate and count, change nothing")
	asJSON := fs.Bool("json", false, "print one JSON object")
	detach := fs.Bool("detach", false, "upload, then return at once with the import job's id")
	pos, err := parseWithPositional(fs, args, 1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErrorf("roster import: FILE is required")
	}
	file := pos[0]
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("roster import: %w", err)
	}
	defer f.Close()
	// Validate locally first, one row at a time: errors name the file's lines.
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("roster import: %w", err)
	}
	bar := newBar(stderr)
	if _, err := roster.Scan(file, &progressReader{r: f, bar: bar, total: fi.Size(), phase: "validate locally KiB"}, nil); err != nil {
		bar.end()
		return err
	}
	bar.end()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("roster import: %w", err)
	}
	var when time.Time
	if *asOf != "" {
		if when, err = time.Parse(time.RFC3339, *asOf); err != nil {
			return fmt.Errorf("roster import: --as-of %q: want RFC 3339 (e.g. 2026-11-28T10:00:00Z)", *asOf)
		}
	} else {
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
	up := newBar(stderr)
	raw, job, err := longCall(ctx, c, http.MethodPost, "/v1/roster/import", q,
		&progressReader{r: f, bar: up, total: fi.Size(), phase: "upload KiB", onEOF: up.end}, ct, *detach, stderr)
	if err != nil {
		return err
	}
	if job != nil {
		return printDetached(stdout, *asJSON, job)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("roster import: %w", err)
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "%s: %d rows, %d applied, %d unchanged (older or equal), %d terminated (--full), as of %s\n",
		file, res.Rows, res.Applied, res.Unchanged, res.Terminated, res.AsOf.Format(time.RFC3339))
	fmt.Fprintln(stdout, "desired state only: run `jml reconcile` (or wait for its schedule) to apply it, under the brakes")
	return nil
}

// progressReader draws how much of a file was read (on a terminal only).
type progressReader struct {
	r     io.Reader
	bar   *bar
	total int64
	n     int64
	phase string
	last  time.Time
	onEOF func() // called once, after the last read
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) > 200*time.Millisecond || err == io.EOF {
		p.last = now
		p.bar.drawPhases("", []string{p.phase}, map[string]int{p.phase: int(p.n >> 10)}, map[string]int{p.phase: int(p.total >> 10)})
	}
	if err == io.EOF && p.onEOF != nil {
		p.onEOF()
		p.onEOF = nil
	}
	return n, err
}
