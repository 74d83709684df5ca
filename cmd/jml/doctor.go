package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
)

// cmdDoctor checks what it can reach and says what to fix, one line per check.
func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object: {\"checks\":[{\"status\",\"check\",\"detail\"}],\"failed\":N}")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	failed := 0
	type check struct {
		Status string `json:"status"` // ok | warn | fail
		Check  string `json:"check"`
		Detail string `json:"detail"`
	}
	checks := []check{}
	line := func(status, name, detail string) {
		checks = append(checks, check{status, name, detail})
		if !*asJSON {
			label := status
			if status == "fail" {
				label = "FAIL"
			}
			fmt.Fprintf(stdout, "%-5s %-14s %s\n", label, name, detail)
		}
	}
	report := func(name string, err error, ok string) {
		if err != nil {
			failed++
			line("fail", name, err.Error())
			return
		}
		line("ok", name, ok)
	}

	natsURL := cfg.NatsURL
	if natsURL == "" {
		if b, err := os.ReadFile(filepath.Join(cfg.DataDir, natsURLFile)); err == nil {
			natsURL = strings.TrimSpace(string(b))
		}
	}
	if natsURL == "" {
		report("nats", fmt.Errorf("set JML_NATS_URL, or start `jml run` with the same JML_DATA_DIR"), "")
	} else if nc, err := nats.Connect(natsURL, nats.Timeout(5*time.Second)); err != nil {
		report("nats", fmt.Errorf("%s: %w", redactURL(natsURL), err), "")
	} else {
		report("nats", nil, "connected to "+nc.ConnectedUrlRedacted())
		nc.Close()
	}

	if cfg.RedisURL != "" || len(cfg.RedisAddrs) > 0 {
		st, err := redisstate.Open(ctx, cfg.RedisOptions())
		if err == nil {
			st.Close()
		}
		report("redis", err, "reachable")
	} else {
		line("ok", "coordination", "embedded (JML_REDIS_URL unset; use Redis when running several workers)")
	}

	if _, err := cfg.Policy(); err != nil {
		report("policy", err, "")
	} else if cfg.PolicyFile != "" {
		report("policy", nil, cfg.PolicyFile+" is valid")
	}
	if srcs, err := config.Sources(); err != nil {
		report("sources", err, "")
	} else {
		doctorSources(stdout, srcs)
	}
	if config.SentryConfigured() {
		if err := cfg.CheckSentry(); err != nil {
			report("sentry", err, "")
		} else if c, err := sentry.New(sentry.Config{BaseURL: cfg.SentryBaseURL(), Org: cfg.SentryOrg, Token: cfg.SentryToken, SCIMToken: cfg.SentrySCIMToken}); err != nil {
			report("sentry", err, "")
		} else if r, err := c.Check(ctx); err != nil {
			report("sentry", fmt.Errorf("%w (the token must be a user auth token, sntryu_…, of a Manager service user with scopes org:read org:write member:read member:write member:admin team:read team:write project:read project:write)", err), "")
		} else {
			report("sentry", nil, fmt.Sprintf("token %s, service user member %s (%s), role %s, org %s", r.TokenKind, r.MemberID, r.Email, r.OrgRole, cfg.SentryOrg))
			region := "API at " + r.APIBase + " (JML_SENTRY_URL)"
			if r.RegionFollowed {
				region = "API at " + r.APIBase + " (the organization's links.regionUrl; " + cfg.SentryBaseURL() + " only for that lookup)"
			}
			fmt.Fprintf(stdout, "ok    %-14s %s\n", "region", region)
			scim := "not enabled for the org: IdP-provisioned leavers cannot be removed (" + r.SCIMDetail + ")"
			if r.SCIMEnabled {
				scim = "enabled"
			}
			line("ok", "scim", scim)
			if r.RateLimitHeaders {
				line("ok", "rate-limits", fmt.Sprintf("Sentry sends rate-limit headers (limit %d, concurrency %d)", r.RateLimit, r.ConcurrentLimit))
			} else {
				line("ok", "rate-limits", "no rate-limit headers (self-hosted): pacing from defaults")
			}
			if r.ClockKnown && r.ClockSkew.Abs() <= sentry.MaxClockSkew {
				line("ok", "clock", fmt.Sprintf("within %s of Sentry's Date header", sentry.MaxClockSkew))
			}
			for _, w := range r.Warnings {
				line("warn", "sentry", w)
			}
		}
	} else {
		line("ok", "sentry", "sandbox mode (no JML_SENTRY_* set): nothing reaches a real Sentry")
	}
	if *asJSON {
		if err := printJSON(stdout, map[string]any{"checks": checks, "failed": failed}); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("doctor: %d check(s) failed", failed)
	}
	return nil
}

// redactURL drops the credentials of each URL in a comma separated list.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = nil
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// doctorSources says, per enabled source, what it cannot do without its
// provider's API (warnings: the source works, with that limit).
func doctorSources(w io.Writer, srcs map[string]providers.Settings) {
	names := make([]string, 0, len(srcs))
	for n, s := range srcs {
		if len(s.Secrets) > 0 {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		warn := ""
		if p, ok := providers.Lookup(n); ok && p.WithoutAPI != nil {
			warn = p.WithoutAPI(srcs[n])
		}
		if warn != "" {
			fmt.Fprintf(w, "warn  %-14s %s\n", "source "+n, warn)
		} else {
			fmt.Fprintf(w, "ok    %-14s enabled\n", "source "+n)
		}
	}
}
