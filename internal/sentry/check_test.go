package sentry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

func TestCheck(t *testing.T) {
	ctx := context.Background()
	t.Run("ErrMissingScopes", func(t *testing.T) {
		// The token belongs to a plain member: its role lacks member:admin etc.
		tg := newSandboxTarget(t, sentrytest.Options{ServiceUser: "jane.doe@acme.test"})
		r, err := tg.client(t).Check(ctx)
		if !errors.Is(err, sentry.ErrMissingScopes) {
			t.Fatalf("Check err = %v, want ErrMissingScopes", err)
		}
		if r == nil || r.OrgRole != "member" || len(r.MissingScopes) == 0 || len(r.Warnings) == 0 {
			t.Errorf("result = %+v", r)
		}
	})
	t.Run("ErrOrgToken", func(t *testing.T) {
		tg := newSandboxTarget(t, sentrytest.Options{})
		c := tg.client(t, func(cfg *sentry.Config) { cfg.Token = "sntrys_abc" })
		if _, err := c.Check(ctx); !errors.Is(err, sentry.ErrOrgToken) {
			t.Errorf("err = %v, want ErrOrgToken", err)
		}
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		tg := newSandboxTarget(t, sentrytest.Options{})
		c := tg.client(t, func(cfg *sentry.Config) { cfg.Token = "sntryu_wrong" })
		_, err := c.Check(ctx)
		if !errors.Is(err, sentry.ErrUnauthorized) || !sentry.IsTransient(err) {
			t.Errorf("err = %v, want ErrUnauthorized (transient)", err)
		}
	})
	t.Run("SCIMDisabled", func(t *testing.T) {
		seed := sentrytest.DemoSeed()
		seed.Org.SCIM = false
		tg := newSandboxTarget(t, sentrytest.Options{Seed: seed})
		r, err := tg.client(t).Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.SCIMEnabled || r.SCIMDetail == "" {
			t.Errorf("result = %+v", r)
		}
	})
	t.Run("ClockSkew", func(t *testing.T) {
		tg := newSandboxTarget(t, sentrytest.Options{})
		r, err := tg.client(t).Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !r.ClockKnown || r.ClockSkew.Abs() > sentry.MaxClockSkew {
			t.Fatalf("same clock: known=%v skew=%v, want known and within %v", r.ClockKnown, r.ClockSkew, sentry.MaxClockSkew)
		}
		for _, w := range r.Warnings {
			if strings.Contains(w, "clock") {
				t.Fatalf("same clock warned: %q", w)
			}
		}
		// Sentry's clock 90 s ahead of ours: we are 90 s behind.
		ahead := newSandboxTarget(t, sentrytest.Options{Now: func() time.Time { return time.Now().Add(90 * time.Second) }})
		r, err = ahead.client(t).Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !r.ClockKnown || r.ClockSkew > -88*time.Second || r.ClockSkew < -92*time.Second {
			t.Fatalf("skew = %v (known %v), want about -90s", r.ClockSkew, r.ClockKnown)
		}
		warned := false
		for _, w := range r.Warnings {
			warned = warned || strings.Contains(w, "clock is -1m30s off")
		}
		if !warned {
			t.Fatalf("no clock warning: %q", r.Warnings)
		}
	})
	t.Run("NoRateLimitHeaders", func(t *testing.T) {
		tg := newSandboxTarget(t, sentrytest.Options{RateLimit: -1})
		r, err := tg.client(t).Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.RateLimitHeaders {
			t.Errorf("result = %+v", r)
		}
	})
}

func TestSCIMToken(t *testing.T) {
	ctx := context.Background()
	tg := newSandboxTarget(t, sentrytest.Options{SCIMToken: "scim-integration-secret"})
	c := tg.client(t, func(cfg *sentry.Config) { cfg.SCIMToken = "scim-integration-secret" })
	r, err := c.Check(ctx)
	if err != nil || !r.SCIMEnabled {
		t.Fatalf("Check = %+v, %v", r, err)
	}
	v, _ := tg.sb.Member("john.smith@acme.test")
	if err := c.SCIMDeleteUser(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := tg.sb.Member("john.smith@acme.test"); ok {
		t.Error("john still a member")
	}
	// The removal is attributed to the SCIM integration, not the service user.
	found := false
	for e, err := range c.AuditLogs(ctx, sentry.AuditLogQuery{Event: "member.remove"}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Actor != nil && e.Actor.ID == "" && e.Actor.Name != "" {
			found = true
		}
	}
	if !found {
		t.Error("no member.remove by the SCIM integration in the audit log")
	}

	bad := tg.client(t, func(cfg *sentry.Config) { cfg.SCIMToken = "wrong" })
	v, _ = tg.sb.Member("laura.chen@acme.test")
	if err := bad.SCIMDeleteUser(ctx, v.ID); !errors.Is(err, sentry.ErrUnauthorized) {
		t.Errorf("wrong SCIM token err = %v, want ErrUnauthorized", err)
	}
	// REST calls keep using the user token.
	if _, err := bad.Me(ctx); err != nil {
		t.Errorf("Me with a bad SCIM token: %v", err)
	}
}
