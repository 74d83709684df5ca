package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
)

// cmdDoctor checks what it can reach and says what to fix, one line per check.
func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	failed := 0
	report := func(name string, err error, ok string) {
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL  %-14s %v\n", name, err)
			return
		}
		fmt.Fprintf(stdout, "ok    %-14s %s\n", name, ok)
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
		fmt.Fprintf(stdout, "ok    %-14s embedded (JML_REDIS_URL unset; use Redis when running several workers)\n", "coordination")
	}

	if _, err := cfg.Policy(); err != nil {
		report("policy", err, "")
	} else if cfg.PolicyFile != "" {
		report("policy", nil, cfg.PolicyFile+" is valid")
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
			scim := "not enabled for the org: IdP-provisioned leavers cannot be removed (" + r.SCIMDetail + ")"
			if r.SCIMEnabled {
				scim = "enabled"
			}
			fmt.Fprintf(stdout, "ok    %-14s %s\n", "scim", scim)
			if r.RateLimitHeaders {
				fmt.Fprintf(stdout, "ok    %-14s Sentry sends rate-limit headers (limit %d, concurrency %d)\n", "rate-limits", r.RateLimit, r.ConcurrentLimit)
			} else {
				fmt.Fprintf(stdout, "ok    %-14s no rate-limit headers (self-hosted): pacing from defaults\n", "rate-limits")
			}
			if r.ClockKnown && r.ClockSkew.Abs() <= sentry.MaxClockSkew {
				fmt.Fprintf(stdout, "ok    %-14s within %s of Sentry's Date header\n", "clock", sentry.MaxClockSkew)
			}
			for _, w := range r.Warnings {
				fmt.Fprintf(stdout, "warn  %-14s %s\n", "sentry", w)
			}
		}
	} else {
		fmt.Fprintf(stdout, "ok    %-14s sandbox mode (no JML_SENTRY_* set): nothing reaches a real Sentry\n", "sentry")
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
