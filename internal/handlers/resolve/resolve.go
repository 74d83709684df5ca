package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// A Resolver reads one person from a provider's API.
//
// Resolve returns the person as the provider has them now: ID (the provider's
// id, as passed, or the worker id a Deel "contract:<id>" reference resolves to),
// Email when the provider has a work email, Status when the provider's state maps
// to one of ours (empty when it does not, e.g. a hire that has not started),
// Name, Department and Title when available. Errors: ErrUnresolvable when the
// provider does not know the id (404) or the id cannot be one of its ids;
// ErrUnauthorized when it refuses the credentials (401/403: alert, do not
// retry blindly); anything else (a *StatusError for 429/5xx, network errors,
// ctx errors) is transient.
type Resolver interface {
	Resolve(ctx context.Context, source, personID string) (events.Person, error)
}

// Errors a Resolver returns; match them with errors.Is.
var (
	ErrUnresolvable  = errors.New("resolve: person unknown to the provider")
	ErrUnauthorized  = errors.New("resolve: provider refused the API credentials")
	ErrNotConfigured = errors.New("resolve: no API access configured for this source")
)

// StatusError is an unexpected answer from a provider (429, 5xx, …).
type StatusError struct {
	Provider string
	Status   int
	Message  string // the start of the body, for logs
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("resolve: %s answered %d: %s", e.Provider, e.Status, e.Message)
}

// Temporary reports whether a retry may succeed (429 and 5xx).
func (e *StatusError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Config is what every provider resolver takes: JML_SOURCE_<NAME>_API_URL and
// JML_SOURCE_<NAME>_API_TOKEN. An empty BaseURL means the provider's public API
// (BambooHR has none: its URL names the company). HTTPClient nil means a client
// with a 10 s timeout.
type Config struct {
	BaseURL    string
	Token      string
	HTTPClient *http.Client
}

// BySource dispatches on the event source.
type BySource map[string]Resolver

var _ Resolver = BySource(nil)

// Resolve implements Resolver; an unknown source is ErrNotConfigured.
func (b BySource) Resolve(ctx context.Context, source, personID string) (events.Person, error) {
	r, ok := b[source]
	if !ok || r == nil {
		return events.Person{}, fmt.Errorf("%w: %s", ErrNotConfigured, source)
	}
	return r.Resolve(ctx, source, personID)
}

// Client is the HTTP plumbing the provider resolvers share.
type Client struct {
	provider string
	base     *url.URL
	hc       *http.Client
}

// NewClient returns the plumbing of one provider's reader: base is
// JML_SOURCE_<NAME>_API_URL (def when empty; an error wrapping
// ErrNotConfigured when both are), hc nil means a client with a 10 s timeout.
func NewClient(provider, base, def string, hc *http.Client) (Client, error) {
	if base == "" {
		base = def
	}
	if base == "" {
		return Client{}, fmt.Errorf("resolve %s: %w: API URL is required", provider, ErrNotConfigured)
	}
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Client{}, fmt.Errorf("resolve %s: API URL %q is not an http(s) URL", provider, base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return Client{provider: provider, base: u, hc: hc}, nil
}

// maxResponse bounds what is read from a provider.
const maxResponse = 1 << 20

// CheckID refuses ids that cannot be a provider id and would change the path.
func CheckID(id string) error {
	if id == "" || len(id) > 256 || id == "." || id == ".." ||
		strings.ContainsAny(id, "/\\?#%") || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: %q is not a provider id", ErrUnresolvable, truncate(id))
	}
	return nil
}

// URL joins the base path with escaped segments.
func (c Client) URL(query url.Values, segments ...string) string {
	u := *c.base
	var b strings.Builder
	b.WriteString(u.Path)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	u.Path = b.String()
	u.RawPath = ""
	if query != nil {
		u.RawQuery = query.Encode()
	}
	return u.String()
}

// Do sends req and decodes a 2xx JSON answer into out; 404 is ErrUnresolvable,
// 401/403 ErrUnauthorized, anything else a *StatusError.
func (c Client) Do(req *http.Request, out any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", c.provider, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("resolve %s: read answer: %w", c.provider, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w (%s answered 404)", ErrUnresolvable, c.provider)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (%s answered %d)", ErrUnauthorized, c.provider, resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return &StatusError{Provider: c.provider, Status: resp.StatusCode, Message: truncate(string(body))}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("resolve %s: answer is not the expected JSON: %w", c.provider, err)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// WorkEmail returns s when it looks like an address (the worker matches it
// against Sentry, which checks the rest).
func WorkEmail(s string) string {
	s = strings.TrimSpace(s)
	if at := strings.LastIndexByte(s, '@'); at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " <>,") {
		return ""
	}
	return s
}

// JoinName joins a first and a last name.
func JoinName(first, last string) string { return strings.TrimSpace(first + " " + last) }

// Attrs builds attributes from key, value pairs, leaving out empty values
// (nil when all are).
func Attrs(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			m[kv[i]] = kv[i+1]
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
