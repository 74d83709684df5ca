package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ErrRetryable marks a failed attempt that may succeed later (5xx, 408, 429,
// timeouts, connection errors). Other errors are permanent.
var ErrRetryable = errors.New("alert: retryable")

// retryError is a retryable failure, optionally with the receiver's Retry-After.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }
func (e *retryError) Is(target error) bool {
	return target == ErrRetryable
}

// StatusError is a non-2xx answer from a sink's receiver.
type StatusError struct {
	Sink   string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("alert: %s answered %d", e.Sink, e.Status)
}

// checkURL accepts absolute http(s) URLs. The URL is a secret (Slack hook URLs
// embed their credential), so errors never repeat it.
func checkURL(name, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("alert: %s URL must be an absolute http(s) URL", name)
	}
	return u, nil
}

// post sends one JSON body and classifies the outcome. Transport errors are
// stripped of the URL (it may carry a credential).
func post(ctx context.Context, hc *http.Client, sink string, u *url.URL, header http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alert: %s: build request", sink)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sentry-jml-alert/1")
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &retryError{err: fmt.Errorf("alert: %s: %w", sink, err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	serr := &StatusError{Sink: sink, Status: resp.StatusCode}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
		return &retryError{err: serr, after: retryAfter(resp.Header.Get("Retry-After"))}
	}
	return serr
}

// retryAfter parses delta-seconds; HTTP dates and garbage give 0.
func retryAfter(v string) time.Duration {
	s, err := strconv.Atoi(v)
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}
