package sentry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// ErrRegionRefused is returned when the organization details name a region
// URL the client will not send the token to (not https on *.sentry.io).
var ErrRegionRefused = errors.New("sentry: region URL refused")

// region follows links.regionUrl of the organization details (Sentry's
// OrganizationSerializer, src/sentry/api/serializers/models/organization.py)
// when the configured base is sentry.io itself: the API then goes to the
// org's region host (us.sentry.io, de.sentry.io). Only an https URL on a
// *.sentry.io host is accepted, so the token never leaves Sentry.
type region struct {
	mu   sync.Mutex
	base *url.URL // resolved region base; nil until resolved
}

// followsRegion reports whether the base URL is sentry.io's control host.
func followsRegion(u *url.URL) bool {
	h := strings.ToLower(u.Hostname())
	return u.Scheme == "https" && (h == "sentry.io" || h == "www.sentry.io") && u.Port() == ""
}

// checkRegionURL validates a links.regionUrl value.
func checkRegionURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegionRefused, err)
	}
	h := strings.ToLower(u.Hostname())
	if u.Scheme != "https" || u.User != nil || (u.Port() != "" && u.Port() != "443") ||
		!(h == "sentry.io" || strings.HasSuffix(h, ".sentry.io")) {
		return nil, fmt.Errorf("%w: %q is not https on *.sentry.io", ErrRegionRefused, u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// apiBase is the base URL a call goes to: the configured one, or the org's
// region once resolved (resolving it first when needed).
func (c *Client) apiBase(ctx context.Context, cl call) (string, error) {
	if !c.regional || cl.control {
		return c.base.String(), nil
	}
	c.region.mu.Lock()
	defer c.region.mu.Unlock()
	if c.region.base != nil {
		return c.region.base.String(), nil
	}
	resp, err := c.do(ctx, call{method: http.MethodGet, pattern: "/api/0/organizations/{org}/", control: true})
	if err != nil {
		return "", fmt.Errorf("sentry: resolve the organization's region: %w", err)
	}
	var org struct {
		Links struct {
			RegionURL string `json:"regionUrl"`
		} `json:"links"`
	}
	if err := resp.decode(&org); err != nil {
		return "", fmt.Errorf("sentry: resolve the organization's region: %w", err)
	}
	if org.Links.RegionURL == "" {
		return "", fmt.Errorf("%w: the organization details carry no links.regionUrl", ErrRegionRefused)
	}
	u, err := checkRegionURL(org.Links.RegionURL)
	if err != nil {
		return "", err
	}
	c.region.base = u
	c.logger.Info("sentry region resolved", "region_url", u.String())
	return u.String(), nil
}

// APIBase returns the base URL the organization's API calls go to: the
// configured one, or — when that is sentry.io — the region named by the
// organization details' links.regionUrl (resolved on first use; followed is
// then true). jml doctor shows it.
func (c *Client) APIBase(ctx context.Context) (base string, followed bool, err error) {
	base, err = c.apiBase(ctx, call{})
	if err != nil {
		return "", false, err
	}
	return base, c.regional, nil
}
