package sentry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"syscall"
)

// Sentinels for the states callers branch on. A [*APIError] matches them through
// errors.Is; see APIError.Is for the exact mapping.
var (
	// ErrNotFound: 404. Callers deleting something treat it as already done.
	ErrNotFound = errors.New("sentry: not found")
	// ErrRateLimited: 429 from the request rate limiter (not the invite quota).
	ErrRateLimited = errors.New("sentry: rate limited")
	// ErrInviteQuota: 429 "You are being rate limited for too many invitations."
	// It is a daily quota; the client never retries it.
	ErrInviteQuota = errors.New("sentry: invite quota exhausted")
	// ErrIdPManaged: 403 "... managed through your organization's identity provider."
	// The member or team must be changed through SCIM (or not at all).
	ErrIdPManaged = errors.New("sentry: managed by the identity provider")
	// ErrLastOwner: 403 "... the only remaining owner (or manager) of the organization."
	ErrLastOwner = errors.New("sentry: only remaining owner or manager")
	// ErrInsufficientRole: the caller's role does not outrank the target, e.g. 400
	// "You cannot remove a member who has more access than you."
	ErrInsufficientRole = errors.New("sentry: insufficient role")
	// ErrConflict: 409, e.g. a SCIM user or a team slug that already exists.
	ErrConflict = errors.New("sentry: conflict")
	// ErrPermission: any 403.
	ErrPermission = errors.New("sentry: permission denied")
	// ErrUnauthorized: 401 (bad, expired or revoked token, SSO/2FA required).
	ErrUnauthorized = errors.New("sentry: unauthorized")
	// ErrOrgToken: New refuses org auth tokens (sntrys_), which carry only org:ci.
	ErrOrgToken = errors.New("sentry: org auth tokens (sntrys_) cannot manage members; use a user auth token (sntryu_)")
	// ErrAccessRequest: a member↔team POST answered 202, i.e. Sentry created an
	// access request instead of a membership.
	ErrAccessRequest = errors.New("sentry: access request created instead of team membership")
	// ErrBadRequest: any 400.
	ErrBadRequest = errors.New("sentry: bad request")
	// ErrShape: an answer whose shape the client does not recognise (the
	// audit-log endpoint is experimental in Sentry and may change).
	ErrShape = errors.New("sentry: response shape not recognised")
)

// APIError is a non-success answer from Sentry.
type APIError struct {
	StatusCode int
	Method     string
	// Endpoint is the URL pattern, e.g. /api/0/organizations/{org}/members/{member}/.
	Endpoint string
	// Path is the concrete request path (ids included, never a token).
	Path string
	// Detail is the human message Sentry sent ("detail", a field message, or a bare string).
	Detail string
	// Code is the machine code of structured details such as {"code":"sso-required"}.
	Code string
	// Body is the raw response body (truncated to 4 KiB).
	Body []byte
}

func (e *APIError) Error() string {
	p := e.Path
	if p == "" {
		p = e.Endpoint
	}
	msg := fmt.Sprintf("sentry: %s %s: %d %s", e.Method, p, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Is reports whether the error matches one of the package sentinels:
//
//	ErrNotFound          404
//	ErrRateLimited       429 unless it is the invite quota
//	ErrInviteQuota       429 "... too many invitations."
//	ErrIdPManaged        403 "... managed through your organization's identity provider."
//	ErrLastOwner         403 "... only remaining owner ..."
//	ErrInsufficientRole  400/403 "... more access than you." and the role-assignment refusals
//	ErrConflict          409
//	ErrPermission        403
//	ErrUnauthorized      401
//	ErrAccessRequest     202 from a member↔team POST
//	ErrBadRequest        400
func (e *APIError) Is(target error) bool {
	d := strings.ToLower(e.Detail)
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests && !e.inviteQuota()
	case ErrInviteQuota:
		return e.StatusCode == http.StatusTooManyRequests && e.inviteQuota()
	case ErrIdPManaged:
		return e.StatusCode == http.StatusForbidden && strings.Contains(d, "identity provider")
	case ErrLastOwner:
		return e.StatusCode == http.StatusForbidden && strings.Contains(d, "only remaining owner")
	case ErrInsufficientRole:
		return (e.StatusCode == http.StatusBadRequest || e.StatusCode == http.StatusForbidden) &&
			(strings.Contains(d, "more access than you") ||
				strings.Contains(d, "permission to assign") ||
				strings.Contains(d, "permission to edit that user's membership"))
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrPermission:
		return e.StatusCode == http.StatusForbidden
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrAccessRequest:
		return e.StatusCode == http.StatusAccepted
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest
	}
	return false
}

func (e *APIError) inviteQuota() bool {
	return strings.Contains(strings.ToLower(e.Detail), "too many invitations")
}

// IsTransient reports whether err is worth retrying later: 5xx, 408, 429 (not the
// invite quota), 401 (the design treats it as an outage of the token: alert and
// retry), timeouts and connection errors. A cancelled context is not transient;
// an expired deadline is (the call may succeed with more time).
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.StatusCode >= 500:
			return true
		case ae.StatusCode == http.StatusRequestTimeout:
			return true
		case ae.StatusCode == http.StatusTooManyRequests:
			return !ae.inviteQuota()
		case ae.StatusCode == http.StatusUnauthorized:
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return isNetworkError(err)
}

// isNetworkError reports connection-level failures (refused, reset, timeouts, EOF
// mid-response).
func isNetworkError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// notSent reports whether a transport error proves the request never reached the
// server, so even a non-idempotent call may be repeated.
func notSent(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

const maxErrorBody = 4 << 10

// newAPIError builds the typed error for a response, extracting Sentry's message
// from its several error shapes.
func newAPIError(method, endpoint, path string, status int, body []byte) *APIError {
	detail, code := parseErrorBody(body)
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
	}
	return &APIError{
		StatusCode: status,
		Method:     method,
		Endpoint:   endpoint,
		Path:       path,
		Detail:     detail,
		Code:       code,
		Body:       append([]byte(nil), body...),
	}
}

// parseErrorBody understands the shapes Sentry uses:
//
//	{"detail":"..."}                                 DRF, SCIM (with schemas/status/scimType)
//	{"detail":{"code":"sso-required","message":"..."}} SSO/2FA
//	{"detail":"You are attempting to use this endpoint too..."} rate-limit middleware (text/html)
//	"You are attempting to use this endpoint too frequently..."  the same, older releases
//	{"email":["The user x is already a member"]}      validation field map
//	{"role":"You do not have permission ..."}         member PUT refusals
func parseErrorBody(body []byte) (detail, code string) {
	b := strings.TrimSpace(string(body))
	if b == "" {
		return "", ""
	}
	var raw any
	if err := json.Unmarshal([]byte(b), &raw); err != nil {
		if len(b) > 200 {
			b = b[:200]
		}
		if strings.HasPrefix(b, "<") { // an HTML error page from a proxy says nothing useful
			return "", ""
		}
		return b, ""
	}
	switch v := raw.(type) {
	case string:
		return v, ""
	case map[string]any:
		if d, ok := v["detail"]; ok {
			switch dv := d.(type) {
			case string:
				c, _ := v["scimType"].(string)
				return dv, c
			case map[string]any:
				m, _ := dv["message"].(string)
				c, _ := dv["code"].(string)
				return m, c
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			if k == "schemas" || k == "status" {
				continue
			}
			if s := flattenMessage(v[k]); s != "" {
				parts = append(parts, k+": "+s)
			}
		}
		return strings.Join(parts, "; "), ""
	case []any:
		return flattenMessage(v), ""
	}
	return "", ""
}

func flattenMessage(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		var parts []string
		for _, e := range x {
			if s := flattenMessage(e); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " ")
	case map[string]any:
		if m, ok := x["message"].(string); ok {
			return m
		}
		if d, ok := x["detail"].(string); ok {
			return d
		}
	}
	return ""
}
