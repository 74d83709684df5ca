package oktaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Sentinels matched by *Error.Is.
var (
	ErrNotFound     = errors.New("okta: not found")
	ErrUnauthorized = errors.New("okta: unauthorized")
	ErrRateLimited  = errors.New("okta: rate limited")
)

// Error is a non-2xx answer of the Okta API.
type Error struct {
	Status  int
	Code    string // errorCode, e.g. E0000007
	Summary string // errorSummary
	ID      string // errorId, for Okta support
	// RetryAt is when the rate limit resets (X-Rate-Limit-Reset), on 429.
	RetryAt time.Time
}

func (e *Error) Error() string {
	return fmt.Sprintf("okta api %d %s: %s", e.Status, e.Code, e.Summary)
}

// Is matches the sentinels by status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	}
	return false
}

// Ref is the actor or a target of a LogEvent.
type Ref struct {
	ID          string         `json:"id"`
	Type        string         `json:"type"`
	AlternateID string         `json:"alternateId"`
	DisplayName string         `json:"displayName"`
	DetailEntry map[string]any `json:"detailEntry,omitempty"`
}

// Outcome is a LogEvent's result.
type Outcome struct {
	Result string `json:"result"`
	Reason string `json:"reason"`
}

// LogEvent is a System Log event (also the element of an event hook's
// data.events[]). Only the fields the daemon uses are decoded; Published stays
// a string so one malformed time does not fail a whole batch.
type LogEvent struct {
	UUID            string   `json:"uuid"`
	Published       string   `json:"published"`
	EventType       string   `json:"eventType"`
	Version         string   `json:"version"`
	DisplayMessage  string   `json:"displayMessage"`
	Severity        string   `json:"severity"`
	LegacyEventType string   `json:"legacyEventType"`
	Actor           *Ref     `json:"actor"`
	Target          []Ref    `json:"target"`
	Outcome         *Outcome `json:"outcome"`
	Transaction     *struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	} `json:"transaction"`
}

// User is an Okta user (GET /api/v1/users/{id}).
type User struct {
	ID            string      `json:"id"`
	Status        string      `json:"status"` // STAGED, PROVISIONED, ACTIVE, RECOVERY, LOCKED_OUT, PASSWORD_EXPIRED, SUSPENDED, DEPROVISIONED
	Created       *time.Time  `json:"created"`
	Activated     *time.Time  `json:"activated"`
	StatusChanged *time.Time  `json:"statusChanged"`
	LastUpdated   *time.Time  `json:"lastUpdated"`
	Profile       UserProfile `json:"profile"`
}

// UserProfile holds the base profile attributes the daemon maps.
type UserProfile struct {
	Login          string `json:"login"`
	Email          string `json:"email"`
	SecondEmail    string `json:"secondEmail"`
	FirstName      string `json:"firstName"`
	LastName       string `json:"lastName"`
	DisplayName    string `json:"displayName"`
	Title          string `json:"title"`
	Department     string `json:"department"`
	Division       string `json:"division"`
	Organization   string `json:"organization"`
	CostCenter     string `json:"costCenter"`
	EmployeeNumber string `json:"employeeNumber"`
	Manager        string `json:"manager"`
	ManagerID      string `json:"managerId"`
}

// Group is an Okta group (GET /api/v1/users/{id}/groups).
type Group struct {
	ID      string `json:"id"`
	Type    string `json:"type"` // OKTA_GROUP, APP_GROUP, BUILT_IN
	Profile struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"profile"`
}

// Client calls the Okta API with an API token (Authorization: SSWS <token>).
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// New returns a Client for the org at baseURL ("https://acme.okta.com"; a
// trailing /api/v1 is accepted). hc may be nil.
func New(baseURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(baseURL), "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("okta api: base URL %q must be an absolute http(s) URL", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/api/v1")
	if strings.TrimSpace(token) == "" {
		return nil, errors.New("okta api: token is required")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{base: u, token: strings.TrimSpace(token), hc: hc}, nil
}

func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	return u.String()
}

// get fetches rawURL into v and returns the response headers.
func (c *Client) get(ctx context.Context, rawURL string, v any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("okta api: %w", err)
	}
	req.Header.Set("Authorization", "SSWS "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("okta api: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("okta api: read body: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		var wire struct {
			ErrorCode    string `json:"errorCode"`
			ErrorSummary string `json:"errorSummary"`
			ErrorID      string `json:"errorId"`
		}
		if json.Unmarshal(body, &wire) == nil {
			e.Code, e.Summary, e.ID = wire.ErrorCode, wire.ErrorSummary, wire.ErrorID
		}
		if e.Summary == "" {
			e.Summary = http.StatusText(resp.StatusCode)
		}
		if reset, err := strconv.ParseInt(resp.Header.Get("X-Rate-Limit-Reset"), 10, 64); err == nil && resp.StatusCode == http.StatusTooManyRequests {
			e.RetryAt = time.Unix(reset, 0)
		}
		return resp.Header, e
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("okta api: decode %s: %w", req.URL.Path, err)
	}
	return resp.Header, nil
}

// User re-reads a user by id (or login). A missing user is an error matching ErrNotFound.
func (c *Client) User(ctx context.Context, id string) (User, error) {
	var u User
	if _, err := c.get(ctx, c.url("/api/v1/users/"+url.PathEscape(id), nil), &u); err != nil {
		return User{}, fmt.Errorf("get user %s: %w", id, err)
	}
	return u, nil
}

// UserGroups lists every group of a user, following Link pagination.
func (c *Client) UserGroups(ctx context.Context, id string) ([]Group, error) {
	next := c.url("/api/v1/users/"+url.PathEscape(id)+"/groups", url.Values{"limit": {"200"}})
	var all []Group
	for pages := 0; next != ""; pages++ {
		if pages >= 100 {
			return nil, fmt.Errorf("list groups of %s: more than 100 pages", id)
		}
		var page []Group
		h, err := c.get(ctx, next, &page)
		if err != nil {
			return nil, fmt.Errorf("list groups of %s: %w", id, err)
		}
		all = append(all, page...)
		if len(page) == 0 {
			break
		}
		if next, err = c.nextLink(h); err != nil {
			return nil, fmt.Errorf("list groups of %s: %w", id, err)
		}
	}
	return all, nil
}

// LogQuery selects System Log events.
type LogQuery struct {
	Since time.Time // lower bound on published (required)
	// Until is the upper bound. Zero is a polling query: Okta then always sends
	// a next link and the listing stops at the first empty page.
	Until  time.Time
	Filter string // SCIM-style filter, e.g. EventTypeFilter(…)
	Limit  int    // page size (default 1000, Okta's maximum)
	// MaxPages bounds the listing (default 100).
	MaxPages int
}

// Logs lists System Log events in ascending published order, following the
// Link rel="next" pages.
func (c *Client) Logs(ctx context.Context, q LogQuery) ([]LogEvent, error) {
	if q.Since.IsZero() {
		return nil, errors.New("list logs: Since is required")
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 1000
	}
	if q.MaxPages <= 0 {
		q.MaxPages = 100
	}
	v := url.Values{
		"since":     {q.Since.UTC().Format("2006-01-02T15:04:05.000Z")},
		"limit":     {strconv.Itoa(q.Limit)},
		"sortOrder": {"ASCENDING"},
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	if q.Filter != "" {
		v.Set("filter", q.Filter)
	}
	next := c.url("/api/v1/logs", v)
	var all []LogEvent
	for pages := 0; next != ""; pages++ {
		if pages >= q.MaxPages {
			return all, fmt.Errorf("list logs: stopped after %d pages (%d events); narrow the window", pages, len(all))
		}
		var page []LogEvent
		h, err := c.get(ctx, next, &page)
		if err != nil {
			return all, fmt.Errorf("list logs: %w", err)
		}
		all = append(all, page...)
		if len(page) == 0 {
			break
		}
		if next, err = c.nextLink(h); err != nil {
			return all, fmt.Errorf("list logs: %w", err)
		}
	}
	return all, nil
}

var linkRe = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="?([a-zA-Z]+)"?`)

// nextLink returns the rel="next" URL of the Link headers, refusing one that
// points at another host (the token must not leave the org).
func (c *Client) nextLink(h http.Header) (string, error) {
	for _, line := range h.Values("Link") {
		for _, m := range linkRe.FindAllStringSubmatch(line, -1) {
			if !strings.EqualFold(m[2], "next") {
				continue
			}
			u, err := url.Parse(m[1])
			if err != nil {
				return "", fmt.Errorf("bad next link %q", m[1])
			}
			if u.Host != c.base.Host || u.Scheme != c.base.Scheme {
				return "", fmt.Errorf("next link %q leaves %s", m[1], c.base.Host)
			}
			return u.String(), nil
		}
	}
	return "", nil
}

// EventTypeFilter builds a System Log filter matching any of the event types.
func EventTypeFilter(types ...string) string {
	parts := make([]string, 0, len(types))
	for _, t := range types {
		parts = append(parts, `eventType eq "`+strings.ReplaceAll(t, `"`, ``)+`"`)
	}
	return strings.Join(parts, " or ")
}
