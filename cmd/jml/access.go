package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
)

// cmdAccess: jml access review [--json|--csv] [--sign].
func cmdAccess(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "review" {
		return errors.New("access: usage: jml access review [--json|--csv] [--sign]")
	}
	fs := flag.NewFlagSet("access review", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	asCSV := fs.Bool("csv", false, "print CSV (one row per member)")
	sign := fs.Bool("sign", false, "store the reviewed snapshot as an evidence record signed off by your operator token's name")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *sign {
		return cmdAccessReviewSign(ctx, stdout) // evidence.go
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var v struct {
		Members []reconcile.ReviewRow `json:"members"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/access/review", nil, &v); err != nil {
		return err
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

// cmdTokens: jml tokens hygiene [--revoke].
func cmdTokens(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "hygiene" {
		return errors.New("tokens: usage: jml tokens hygiene [--revoke]")
	}
	fs := flag.NewFlagSet("tokens hygiene", flag.ContinueOnError)
	fs.SetOutput(stderr)
	revoke := fs.Bool("revoke", false, "apply the policy's token_hygiene.action (revoke) now")
	fs.Bool("json", true, "print one JSON object (the default)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	method := http.MethodGet
	if *revoke {
		method = http.MethodPost
	}
	return cmdSimple(method, "/v1/tokens/hygiene", func(*flag.FlagSet) func() (url.Values, error) {
		return func() (url.Values, error) { return nil, nil }
	})(ctx, nil, stdout, stderr)
}
