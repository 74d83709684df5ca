package sentry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const instrumentationName = "github.com/sentry-jml/sentry-jml/internal/sentry"

// Config configures New. BaseURL, Org and Token are required.
type Config struct {
	// BaseURL is the Sentry instance, e.g. https://sentry.io, https://de.sentry.io
	// or a self-hosted URL. A trailing slash or /api/0 suffix is tolerated.
	BaseURL string
	// Org is the organization slug (or id).
	Org string
	// Token is a user auth token (sntryu_… or a legacy unprefixed token). Org auth
	// tokens (sntrys_…) are refused with ErrOrgToken unless AllowAnyToken.
	Token string
	// SCIMToken, when set, is used for the SCIM endpoints instead of Token.
	SCIMToken string
	// AllowAnyToken accepts any token string (the sandbox).
	AllowAnyToken bool
	// HTTPClient is copied (its Transport used as is; the client instruments
	// each request itself, see httpTelemetry). nil: a client with a 30s
	// timeout and a pooled transport.
	HTTPClient *http.Client
	// TracerProvider and MeterProvider default to the otel globals.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Logger defaults to discarding. Tokens are never logged.
	Logger *slog.Logger
	// MaxRetries bounds retries of transient failures (timeouts, connection errors,
	// 5xx) for calls that are safe to repeat. 0 means 4; negative means none.
	// Rate-limit 429s are waited out separately (up to MaxRateLimitWaits).
	MaxRetries int
	// MaxRateLimitWaits bounds how often one call waits out a 429. 0 means 10.
	MaxRateLimitWaits int
	// Budget paces requests; share one between clients (and replicas, with a
	// shared store). nil: a private LocalBudget.
	Budget Budget
	// Gate admits every mutating request (pause, brakes, lease). nil: the
	// client only reads; every mutation is refused unsent.
	Gate Gate
}

// Client is a Sentry API client for one organization. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	org        string
	token      string
	scimToken  string
	tokenKey   string
	scimKey    string
	http       *http.Client
	tracer     trace.Tracer
	logger     *slog.Logger
	maxRetries int
	maxWaits   int
	budget     Budget
	gate       Gate
	backoffMin time.Duration
	backoffMax time.Duration

	mRequests metric.Int64Counter
	mRetries  metric.Int64Counter
	mWait     metric.Float64Histogram
	remaining *remainingGauge

	regional bool // base is sentry.io: follow links.regionUrl (region.go)
	region   region
	// own is the transport New created (nil when the caller gave an
	// HTTPClient): Close releases its pooled connections.
	own *http.Transport
	// telemetry is the HTTP client span and duration metric of each request.
	telemetry *httpTelemetry
}

// Close releases the connections the client keeps to Sentry. Pooled ones
// include connections dialed but never used (the transport dials while an
// earlier connection is being freed, then keeps both): a server sees those
// as new connections that have not sent a request yet, and its graceful
// shutdown waits up to 5 s for each of them. Call it once the client's last
// request is done; the client must not be used afterwards.
func (c *Client) Close() {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
}

// TokenKind classifies a Sentry token by its prefix.
type TokenKind string

// Token kinds.
const (
	TokenUser       TokenKind = "user"       // sntryu_
	TokenOrg        TokenKind = "org"        // sntrys_
	TokenLegacy     TokenKind = "legacy"     // unprefixed (user or integration)
	TokenUnverified TokenKind = "unverified" // AllowAnyToken and not recognizable
)

// KindOf classifies a token by prefix without revealing it.
func KindOf(token string) TokenKind {
	switch {
	case strings.HasPrefix(token, "sntryu_"):
		return TokenUser
	case strings.HasPrefix(token, "sntrys_"):
		return TokenOrg
	case isHex(token) && len(token) >= 32:
		return TokenLegacy
	}
	return TokenUnverified
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// New validates cfg and returns a Client. It does no I/O; call Check at start.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.BaseURL) == "" {
		return nil, errors.New("sentry: base URL is empty")
	}
	u, err := url.Parse(strings.TrimSpace(cfg.BaseURL))
	if err != nil {
		return nil, fmt.Errorf("sentry: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("sentry: base URL %q: want http(s)://host", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.Path = strings.TrimSuffix(u.Path, "/api/0")
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment, u.User = "", "", "", nil
	if strings.TrimSpace(cfg.Org) == "" {
		return nil, errors.New("sentry: organization slug is empty")
	}
	if cfg.Token == "" {
		return nil, errors.New("sentry: token is empty")
	}
	if !cfg.AllowAnyToken {
		if KindOf(cfg.Token) == TokenOrg {
			return nil, ErrOrgToken
		}
		if strings.ContainsAny(cfg.Token, " \t\r\n") {
			return nil, errors.New("sentry: token contains whitespace")
		}
	}
	c := &Client{
		base:       u,
		org:        strings.TrimSpace(cfg.Org),
		token:      cfg.Token,
		scimToken:  cfg.SCIMToken,
		tokenKey:   tokenKey(cfg.Token),
		logger:     cfg.Logger,
		maxRetries: cfg.MaxRetries,
		maxWaits:   cfg.MaxRateLimitWaits,
		budget:     cfg.Budget,
		gate:       cfg.Gate,
		backoffMin: 200 * time.Millisecond,
		backoffMax: 5 * time.Second,
	}
	c.regional = followsRegion(u)
	c.scimKey = c.tokenKey
	if cfg.SCIMToken != "" {
		c.scimKey = tokenKey(cfg.SCIMToken)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = 4
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.maxWaits <= 0 {
		c.maxWaits = 10
	}
	if c.budget == nil {
		c.budget = NewLocalBudget(LocalBudgetOptions{})
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	c.tracer = tp.Tracer(instrumentationName)
	meter := mp.Meter(instrumentationName)
	if c.mRequests, err = meter.Int64Counter("sentry.client.requests",
		metric.WithDescription("Sentry API requests by method, endpoint pattern and status.")); err != nil {
		return nil, fmt.Errorf("sentry: metrics: %w", err)
	}
	if c.mRetries, err = meter.Int64Counter("sentry.client.retries",
		metric.WithDescription("Sentry API request retries by reason.")); err != nil {
		return nil, fmt.Errorf("sentry: metrics: %w", err)
	}
	if c.mWait, err = meter.Float64Histogram("sentry.client.rate_limit.wait",
		metric.WithUnit("s"), metric.WithDescription("Time spent waiting for the rate budget.")); err != nil {
		return nil, fmt.Errorf("sentry: metrics: %w", err)
	}
	zeroRetries(c.mRetries)
	if c.remaining, err = newRemainingGauge(meter); err != nil {
		return nil, fmt.Errorf("sentry: metrics: %w", err)
	}

	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc.Timeout = 30 * time.Second
	}
	base := hc.Transport
	if base == nil {
		if cfg.HTTPClient == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.MaxIdleConnsPerHost = 64
			t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
			t.ResponseHeaderTimeout = 20 * time.Second
			base, c.own = t, t
		} else {
			base = http.DefaultTransport
		}
	}
	hc.Transport = base
	c.http = &hc
	if c.telemetry, err = newHTTPTelemetry(tp, meter); err != nil {
		return nil, fmt.Errorf("sentry: metrics: %w", err)
	}
	return c, nil
}

// redactedURL is u with every query value replaced by REDACTED (the names
// stay): member searches carry the person's email (?query=email:…), which
// must not land in traces.
func redactedURL(u *url.URL) string {
	c := *u
	if c.RawQuery == "" {
		c.User = nil
		return c.String()
	}
	q := c.Query()
	for k, vs := range q {
		for i := range vs {
			vs[i] = "REDACTED"
		}
		q[k] = vs
	}
	c.RawQuery = q.Encode()
	c.User = nil
	return c.String()
}

// tokenKey identifies a token in rate-budget keys without revealing it.
func tokenKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:6])
}

// Org returns the organization slug.
func (c *Client) Org() string { return c.org }

// BaseURL returns the normalized base URL.
func (c *Client) BaseURL() string { return c.base.String() }

// call describes one logical HTTP request.
type call struct {
	method  string
	pattern string   // e.g. /api/0/organizations/{org}/members/{member}/
	args    []string // values for the placeholders other than {org}, in order
	query   url.Values
	body    any
	scim    bool
	// idempotent marks a POST/PATCH as safe to repeat after an ambiguous failure
	// (its second application is a no-op or a recognizable "already done").
	idempotent bool
	// removal marks a request that removes a member or an invite (the gate's
	// brakes count it).
	removal bool
	// control sends the call to the configured base even when the client
	// follows the org's region (the region lookup itself).
	control bool
}

func (cl call) safe() bool {
	switch cl.method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return true
	}
	return cl.idempotent
}

// path fills the pattern's placeholders, escaping each value.
func (c *Client) path(cl call) (string, error) {
	var sb strings.Builder
	p := cl.pattern
	next := 0
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			sb.WriteString(p)
			break
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("sentry: bad pattern %q", cl.pattern)
		}
		sb.WriteString(p[:i])
		name := p[i+1 : i+j]
		var v string
		if name == "org" {
			v = c.org
		} else {
			if next >= len(cl.args) {
				return "", fmt.Errorf("sentry: pattern %q: missing %s", cl.pattern, name)
			}
			v = cl.args[next]
			next++
		}
		if v == "" || v == "." || v == ".." {
			return "", fmt.Errorf("sentry: %s: invalid %s %q", cl.pattern, name, v)
		}
		sb.WriteString(url.PathEscape(v))
		p = p[i+j+1:]
	}
	return sb.String(), nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) decode(v any) error {
	if err := unmarshal(r.body, v); err != nil {
		return fmt.Errorf("sentry: decode response: %w", err)
	}
	return nil
}

const maxBody = 64 << 20

// do sends the call, pacing it through the budget, waiting out 429s and retrying
// transient failures when the call is safe to repeat. A non-2xx answer is an
// *APIError.
func (c *Client) do(ctx context.Context, cl call) (*response, error) {
	path, err := c.path(cl)
	if err != nil {
		return nil, err
	}
	var body []byte
	if cl.body != nil {
		if body, err = json.Marshal(cl.body); err != nil {
			return nil, fmt.Errorf("sentry: encode %s %s: %w", cl.method, cl.pattern, err)
		}
	}
	base, err := c.apiBase(ctx, cl)
	if err != nil {
		return nil, err
	}
	full := base + path
	if len(cl.query) > 0 {
		full += "?" + cl.query.Encode()
	}
	token, key := c.token, c.tokenKey
	if cl.scim && c.scimToken != "" {
		token, key = c.scimToken, c.scimKey
	}
	bkey := key + " " + cl.method + " " + cl.pattern
	span := trace.SpanFromContext(ctx)
	prio := PriorityFrom(ctx)
	attrs := metric.WithAttributeSet(attribute.NewSet(
		attribute.String("http.request.method", cl.method),
		attribute.String("sentry.endpoint", cl.pattern),
	))
	retries, waits := 0, 0
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		release, err := c.budget.Acquire(ctx, bkey, prio)
		if err != nil {
			return nil, fmt.Errorf("sentry: %s %s: wait for rate budget: %w", cl.method, path, err)
		}
		// Every acquisition is recorded, zero waits included: the histogram's
		// quantiles are over all requests and it exists from the first call.
		waited := time.Since(t0)
		c.mWait.Record(ctx, waited.Seconds(), attrs)
		if waited >= time.Millisecond {
			span.AddEvent("sentry.rate_limit.wait", trace.WithAttributes(
				attribute.Float64("sentry.wait_seconds", waited.Seconds()),
				attribute.String("sentry.priority", prio.String()),
				attribute.String("sentry.endpoint", cl.pattern),
			))
		}
		done := func() {}
		if cl.method != http.MethodGet {
			// The safety gate's word before a mutation leaves, after any
			// rate-limit wait or retry backoff: pause, brakes, and the
			// caller's lease ("do I still hold the person?").
			if done, err = c.admit(ctx, cl, path, attempt > 1); err != nil {
				release()
				return nil, err
			}
			if check := preSendFrom(ctx); check != nil {
				if err := check(ctx); err != nil {
					done()
					release()
					return nil, fmt.Errorf("sentry: %s %s: not sent: %w", cl.method, path, err)
				}
			}
		}
		sentAt := time.Now()
		resp, err := c.send(ctx, cl, full, token, body)
		rr := RequestRecord{Method: cl.method, Path: path, At: sentAt.UTC(), Duration: time.Since(sentAt)}
		if err != nil {
			rr.Err = err.Error()
		} else {
			rr.Status = resp.status
		}
		logRequest(ctx, rr)
		done()
		release()
		if err != nil {
			c.mRequests.Add(ctx, 1, metric.WithAttributes(
				attribute.String("http.request.method", cl.method),
				attribute.String("sentry.endpoint", cl.pattern),
				attribute.String("error.type", "transport")))
			if ctx.Err() == nil && IsTransient(err) && (cl.safe() || notSent(err)) && retries < c.maxRetries {
				retries++
				if err := c.backoff(ctx, span, cl, path, retries, "transport", err); err != nil {
					return nil, err
				}
				continue
			}
			return nil, fmt.Errorf("sentry: %s %s: %w", cl.method, path, err)
		}
		c.mRequests.Add(ctx, 1, metric.WithAttributes(
			attribute.String("http.request.method", cl.method),
			attribute.String("sentry.endpoint", cl.pattern),
			attribute.Int("http.response.status_code", resp.status)))
		lim := parseLimits(resp.header, time.Now())
		var apiErr *APIError
		if resp.status >= 300 {
			apiErr = newAPIError(cl.method, cl.pattern, path, resp.status, resp.body)
		}
		rateLimited := apiErr != nil && errors.Is(apiErr, ErrRateLimited)
		lim.Exceeded = rateLimited
		c.remaining.record(cl.method, cl.pattern, lim)
		if lim.Present || rateLimited || resp.status < 300 {
			c.budget.Observe(bkey, lim)
		}
		if apiErr == nil {
			return resp, nil
		}
		switch {
		case rateLimited && waits < c.maxWaits:
			waits++
			span.AddEvent("sentry.rate_limited", trace.WithAttributes(
				attribute.String("sentry.endpoint", cl.pattern),
				attribute.Int("sentry.attempt", attempt),
				attribute.String("sentry.reset", lim.Reset.UTC().Format(time.RFC3339)),
			))
			c.mRetries.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "rate_limited")))
			c.logger.DebugContext(ctx, "sentry rate limited; waiting for the window to reset",
				"method", cl.method, "path", path, "reset", lim.Reset)
			continue // Acquire waits until Reset.
		case (resp.status >= 500 || resp.status == http.StatusRequestTimeout) && cl.safe() && retries < c.maxRetries:
			retries++
			if err := c.backoff(ctx, span, cl, path, retries, "status_"+strconv.Itoa(resp.status), apiErr); err != nil {
				return nil, err
			}
			continue
		}
		return nil, apiErr
	}
}

func (c *Client) backoff(ctx context.Context, span trace.Span, cl call, path string, n int, reason string, cause error) error {
	d := c.backoffMin << (n - 1)
	if d > c.backoffMax || d <= 0 {
		d = c.backoffMax
	}
	d = d/2 + rand.N(d/2+1)
	span.AddEvent("sentry.retry", trace.WithAttributes(
		attribute.Int("sentry.retry", n),
		attribute.String("sentry.reason", reason),
		attribute.Float64("sentry.backoff_seconds", d.Seconds()),
	))
	c.mRetries.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	c.logger.DebugContext(ctx, "sentry request failed; retrying",
		"method", cl.method, "path", path, "retry", n, "backoff", d, "error", cause.Error())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("sentry: %s %s: %w (last error: %w)", cl.method, path, ctx.Err(), cause)
	case <-t.C:
		return nil
	}
}

func (c *Client) send(ctx context.Context, cl call, u, token string, body []byte) (*response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sentry-jml")
	if body != nil {
		if cl.scim {
			req.Header.Set("Content-Type", "application/scim+json")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	finish := c.telemetry.begin(ctx, req, cl.pattern)
	hr, err := c.http.Do(req)
	if err != nil {
		finish(0, err)
		return nil, err
	}
	defer hr.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hr.Body, maxBody))
	if err != nil {
		finish(0, err)
		return nil, fmt.Errorf("read body: %w", err)
	}
	finish(hr.StatusCode, nil)
	return &response{status: hr.StatusCode, header: hr.Header, body: b}, nil
}

// parseLimits reads the X-Sentry-Rate-Limit-* headers.
func parseLimits(h http.Header, now time.Time) Limits {
	var l Limits
	get := func(name string) (int, bool) {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			return 0, false
		}
		l.Present = true
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, false
		}
		return int(f), true
	}
	l.Limit, _ = get("X-Sentry-Rate-Limit-Limit")
	l.Remaining, _ = get("X-Sentry-Rate-Limit-Remaining")
	if r, ok := get("X-Sentry-Rate-Limit-Reset"); ok {
		if r < 1_000_000_000 { // a delta, not an epoch
			l.Reset = now.Add(time.Duration(r) * time.Second)
		} else {
			l.Reset = time.Unix(int64(r), 0)
		}
	}
	l.ConcurrentLimit, _ = get("X-Sentry-Rate-Limit-ConcurrentLimit")
	return l
}

// start begins the span of one logical call.
func (c *Client) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs = append(attrs, attribute.String("sentry.org", c.org))
	return c.tracer.Start(ctx, "sentry."+name, trace.WithAttributes(attrs...))
}

// end finishes a span, recording err unless it is an expected "not found".
func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		if !errors.Is(err, ErrNotFound) {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}
