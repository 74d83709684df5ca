package sentry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

func TestAPIErrorClassification(t *testing.T) {
	all := []error{ErrNotFound, ErrRateLimited, ErrInviteQuota, ErrIdPManaged, ErrLastOwner,
		ErrInsufficientRole, ErrConflict, ErrPermission, ErrUnauthorized, ErrAccessRequest, ErrBadRequest}
	for _, tc := range []struct {
		name      string
		status    int
		body      string
		want      []error
		detail    string
		transient bool
	}{
		{"NotFound", 404, `{"detail":"The requested resource does not exist"}`, []error{ErrNotFound}, "The requested resource does not exist", false},
		{"SCIMNotFound", 404, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"The requested resource does not exist","status":"404"}`, []error{ErrNotFound}, "The requested resource does not exist", false},
		{"RateLimited", 429, `"You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"`, []error{ErrRateLimited}, "You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds", true},
		// src/sentry/middleware/ratelimit.py: {"detail": ...} (served as text/html); older releases sent a bare string.
		{"RateLimitedDetail", 429, `{"detail":"You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"}`, []error{ErrRateLimited}, "You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds", true},
		{"RateLimitedConcurrent", 429, `{"detail":"You are attempting to go above the allowed concurrency for this endpoint. Concurrency limit is 25"}`, []error{ErrRateLimited}, "You are attempting to go above the allowed concurrency for this endpoint. Concurrency limit is 25", true},
		{"InviteQuota", 429, `{"detail":"You are being rate limited for too many invitations."}`, []error{ErrInviteQuota}, "You are being rate limited for too many invitations.", false},
		{"IdPManagedMember", 403, `{"detail":"This user is managed through your organization's identity provider."}`, []error{ErrIdPManaged, ErrPermission}, "", false},
		{"IdPManagedTeam", 403, `{"detail":"This team is managed through your organization's identity provider."}`, []error{ErrIdPManaged, ErrPermission}, "", false},
		{"LastOwner", 403, `{"detail":"You cannot remove the only remaining owner of the organization."}`, []error{ErrLastOwner, ErrPermission}, "", false},
		{"LastOwnerOrManager", 403, `{"detail":"You cannot remove the only remaining owner or manager of the organization."}`, []error{ErrLastOwner, ErrPermission}, "", false},
		{"MoreAccess", 400, `{"detail":"You cannot remove a member who has more access than you."}`, []error{ErrInsufficientRole, ErrBadRequest}, "", false},
		{"AssignRole", 403, `{"role":"You do not have permission to assign a role to the given user."}`, []error{ErrInsufficientRole, ErrPermission}, "role: You do not have permission to assign a role to the given user.", false},
		{"Conflict", 409, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"User already exists in the database."}`, []error{ErrConflict}, "User already exists in the database.", false},
		{"Permission", 403, `{"detail":"You do not have permission to perform this action."}`, []error{ErrPermission}, "", false},
		{"Unauthorized", 401, `{"detail":"Invalid token"}`, []error{ErrUnauthorized}, "Invalid token", true},
		{"SSORequired", 401, `{"detail":{"code":"sso-required","message":"Must login via SSO","extra":{}}}`, []error{ErrUnauthorized}, "Must login via SSO", true},
		{"AccessRequest", 202, ``, []error{ErrAccessRequest}, "", false},
		{"FieldErrors", 400, `{"email":["The user a@x.com is already a member"]}`, []error{ErrBadRequest}, "email: The user a@x.com is already a member", false},
		{"ServerError", 500, `{"detail":"Internal Error","errorId":"abc"}`, nil, "Internal Error", true},
		{"BadGateway", 502, `<html>bad gateway</html>`, nil, "", true},
		{"Timeout", 408, ``, nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAPIError("DELETE", patMember, "/api/0/organizations/acme/members/1/", tc.status, []byte(tc.body))
			wrapped := fmt.Errorf("remove member 1: %w", e)
			for _, s := range all {
				want := false
				for _, w := range tc.want {
					if w == s {
						want = true
					}
				}
				if got := errors.Is(wrapped, s); got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", e, s, got, want)
				}
			}
			if tc.detail != "" && e.Detail != tc.detail {
				t.Errorf("Detail = %q, want %q", e.Detail, tc.detail)
			}
			if got := IsTransient(wrapped); got != tc.transient {
				t.Errorf("IsTransient = %v, want %v", got, tc.transient)
			}
			var ae *APIError
			if !errors.As(wrapped, &ae) || ae.StatusCode != tc.status || ae.Endpoint != patMember {
				t.Errorf("errors.As = %+v", ae)
			}
		})
	}
}

func TestIsTransientNonAPI(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"Nil", nil, false},
		{"Canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"Deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"Refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{"Reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"OrgToken", ErrOrgToken, false},
		{"Plain", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsTransient(tc.err); got != tc.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestAPIErrorMessage(t *testing.T) {
	e := newAPIError("DELETE", patMember, "/api/0/organizations/acme/members/7/", 404, []byte(`{"detail":"The requested resource does not exist"}`))
	want := "sentry: DELETE /api/0/organizations/acme/members/7/: 404 Not Found: The requested resource does not exist"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr error
		ok      bool
	}{
		{"OK", Config{BaseURL: "https://sentry.io/", Org: "acme", Token: "sntryu_abc"}, nil, true},
		{"Legacy", Config{BaseURL: "https://de.sentry.io/api/0/", Org: "acme", Token: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}, nil, true},
		{"ErrOrgToken", Config{BaseURL: "https://sentry.io", Org: "acme", Token: "sntrys_abc"}, ErrOrgToken, false},
		{"AllowAnyToken", Config{BaseURL: "http://127.0.0.1:9000", Org: "acme", Token: "sntrys_abc", AllowAnyToken: true}, nil, true},
		{"ErrEmptyURL", Config{Org: "acme", Token: "x"}, nil, false},
		{"ErrBadURL", Config{BaseURL: "sentry.io", Org: "acme", Token: "x"}, nil, false},
		{"ErrEmptyOrg", Config{BaseURL: "https://sentry.io", Token: "x"}, nil, false},
		{"ErrEmptyToken", Config{BaseURL: "https://sentry.io", Org: "acme"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			if tc.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.Org() != "acme" {
					t.Errorf("Org() = %q", c.Org())
				}
				if b := c.BaseURL(); b[len(b)-1] == '/' || len(b) > 7 && b[len(b)-6:] == "/api/0" {
					t.Errorf("BaseURL() = %q not normalized", b)
				}
				return
			}
			if err == nil {
				t.Fatal("New succeeded, want error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
