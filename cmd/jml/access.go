package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
)

// cmdAccess: jml access review [--json|--csv] [--detach] [--sign].
func cmdAccess(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("access review", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	asCSV := fs.Bool("csv", false, "print CSV (one row per member)")
	detach := fs.Bool("detach", false, "start the review as a job and return at once with its id")
	sign := fs.Bool("sign", false, "store the reviewed snapshot as an evidence record signed off by your operator token's name")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	if *asJSON && *asCSV {
		return usageErrorf("access review: --json and --csv exclude each other")
	}
	if *sign {
		return cmdAccessReviewSign(ctx, stdout, stderr) // evidence.go
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	raw, job, err := longCall(ctx, c, http.MethodGet, "/v1/access/review", nil, nil, "", *detach, stderr)
	if err != nil {
		return err
	}
	if job != nil {
		return printDetached(stdout, *asJSON, job)
	}
	var v struct {
		Members []reconcile.ReviewRow `json:"members"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("access review: %w", err)
	}
	switch {
	case *asJSON:
		return printJSON(stdout, v)
	case *asCSV:
		return reconcile.WriteReviewCSV(stdout, v.Members)
	}
	for _, m := range v.Members {
		agree := "agrees"
		if !m.PolicyAgrees {
			agree = "DIFFERS: " + strings.Join(m.Differences, "; ")
		}
		var teams []string
		for _, t := range m.Teams {
			teams = append(teams, t.Slug+":"+t.Role)
		}
		fmt.Fprintf(stdout, "%-40s %-8s sso=%-5v teams=%s projects=%d  %s  policy %s\n", m.Email, m.OrgRole, m.SSOLinked,
			strings.Join(teams, ","), len(m.Projects), m.Class, agree)
	}
	return nil
}

// cmdTokens: jml tokens hygiene [--revoke] [--json].
func cmdTokens(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokens hygiene", flag.ContinueOnError)
	fs.SetOutput(stderr)
	revoke := fs.Bool("revoke", false, "apply the policy's token_hygiene.action (revoke) now")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	method := http.MethodGet
	if *revoke {
		method = http.MethodPost
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var v any
	if err := c.do(ctx, method, "/v1/tokens/hygiene", nil, &v); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	printText(stdout, v)
	return nil
}
