package sentry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// Check against the sandbox standing in for sentry.io and its us region
// (one sandbox behind two TLS hosts): the organization details
// (src/sentry/core/endpoints/organization_details.py, links.regionUrl from
// src/sentry/api/serializers/models/organization.py) are read from
// sentry.io once, everything else goes to us.sentry.io, and the result names
// the region jml doctor shows.
func TestCheckResolvesRegionFromSandbox(t *testing.T) {
	sb := sentrytest.New(sentrytest.Options{Token: "sntryu_tok", RegionURL: "https://us.sentry.io", OrganizationURL: "https://acme.sentry.io"})
	tr, hits := fakeHosts(t, map[string]http.HandlerFunc{"sentry.io": sb.ServeHTTP, "us.sentry.io": sb.ServeHTTP})
	c, err := New(Config{BaseURL: "https://sentry.io", Org: "acme", Token: "sntryu_tok", HTTPClient: &http.Client{Transport: tr}, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Check(context.Background())
	if err != nil {
		t.Fatalf("Check: %v (result %+v)", err, r)
	}
	if r.APIBase != "https://us.sentry.io" || !r.RegionFollowed {
		t.Fatalf("APIBase %q followed %v, want https://us.sentry.io followed", r.APIBase, r.RegionFollowed)
	}
	if !r.ScopesKnown || len(r.MissingScopes) != 0 {
		t.Fatalf("scopes from the organization details: known %v missing %v", r.ScopesKnown, r.MissingScopes)
	}
	if hits["sentry.io"].Load() != 1 || hits["us.sentry.io"].Load() < 2 {
		t.Fatalf("hits sentry.io=%d us=%d, want 1 lookup on sentry.io and the rest on the region", hits["sentry.io"].Load(), hits["us.sentry.io"].Load())
	}

	// A base that is not sentry.io is used as is.
	plain := httptest.NewServer(sb)
	t.Cleanup(plain.Close)
	c2, err := New(Config{BaseURL: plain.URL, Org: "acme", Token: "sntryu_tok"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c2.Check(context.Background()); err != nil || r.APIBase != plain.URL || r.RegionFollowed {
		t.Fatalf("plain base: %+v, %v", r, err)
	}
}
