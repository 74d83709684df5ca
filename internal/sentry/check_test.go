package sentry_test

import (
	"context"
	"errors"
	"testing"

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
