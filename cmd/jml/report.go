package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

func cmdReportDeprovisioning(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report deprovisioning", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fromS := fs.String("from", "", "window start, RFC 3339 or a date (required)")
	toS := fs.String("to", "", "window end, RFC 3339 or a date (exclusive; default now)")
	sla := fs.Duration("sla", time.Hour, "the company's deprovisioning SLA")
	format := fs.String("format", "html", "html, csv or json")
	sample := fs.Int("sample", 0, "mark N leavers chosen at random for auditors")
	seed := fs.Uint64("seed", 0, "the sample's seed (the same seed picks the same leavers)")
	out := fs.String("out", "", "write to FILE instead of stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	from, err := parseWhen("from", *fromS)
	if err != nil {
		return err
	}
	if from.IsZero() {
		return errors.New("report deprovisioning: --from is required")
	}
	to, err := parseWhen("to", *toS)
	if err != nil {
		return err
	}
	if to.IsZero() {
		to = time.Now().UTC().Truncate(time.Second).Add(time.Second)
	}
	if *sla <= 0 {
		return errors.New("report deprovisioning: --sla must be positive")
	}
	switch *format {
	case "html", "csv", "json":
	default:
		return fmt.Errorf("report deprovisioning: --format %q: html, csv or json", *format)
	}
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "sla": {sla.String()}, "format": {*format}}
	if *sample > 0 {
		q.Set("sample", strconv.Itoa(*sample))
		q.Set("seed", strconv.FormatUint(*seed, 10))
	}
	return streamTo(ctx, "/v1/report/deprovisioning", q, *out, stdout)
}

// streamTo copies an admin route's answer to stdout or --out FILE.
func streamTo(ctx context.Context, path string, q url.Values, out string, stdout io.Writer) error {
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	w, closeOut, err := outFile(out, stdout)
	if err != nil {
		return err
	}
	err = c.stream(ctx, path, q, w)
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	return err
}

func cmdReportInactive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report inactive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	days := fs.Int("days", 90, "no Sentry login in this many days (PCI DSS 8.2.6: 90)")
	format := fs.String("format", "json", "json or csv")
	out := fs.String("out", "", "write to FILE instead of stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *days <= 0 {
		return errors.New("report inactive: --days must be positive")
	}
	if *format != "json" && *format != "csv" {
		return fmt.Errorf("report inactive: --format %q: json or csv", *format)
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var v struct {
		Days    int       `json:"days"`
		Cutoff  time.Time `json:"cutoff"`
		Members []struct {
			MemberID  string     `json:"member_id"`
			Email     string     `json:"email"`
			OrgRole   string     `json:"org_role"`
			LastLogin *time.Time `json:"last_login"`
			Person    string     `json:"person,omitempty"`
			Status    string     `json:"status,omitempty"`
			Class     string     `json:"class"`
		} `json:"members"`
	}
	raw, _, err := longCall(ctx, c, http.MethodGet, "/v1/report/inactive", url.Values{"days": {strconv.Itoa(*days)}}, nil, "", false, stderr)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("report inactive: %w", err)
	}
	w, closeOut, err := outFile(*out, stdout)
	if err != nil {
		return err
	}
	if *format == "json" {
		err = printJSON(w, v)
	} else {
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"member_id", "email", "org_role", "last_login", "person", "status", "class"})
		for _, m := range v.Members {
			last := "never"
			if m.LastLogin != nil {
				last = m.LastLogin.UTC().Format(time.RFC3339)
			}
			_ = cw.Write([]string{m.MemberID, m.Email, m.OrgRole, last, m.Person, m.Status, m.Class})
		}
		cw.Flush()
		err = cw.Error()
	}
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	return err
}
