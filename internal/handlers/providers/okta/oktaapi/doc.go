// Package oktaapi is a small client for the Okta management API pieces the
// Okta source needs: re-reading a user (GET /api/v1/users/{id}) and its groups
// after a thin event-hook delivery, and catching up on System Log events
// (GET /api/v1/logs, Link pagination) missed while the hook endpoint was down,
// since Okta retries a failed delivery only once. It owns the Okta wire format
// only and must not publish, read configuration or touch Sentry; oktatest
// (internal/handlers/providers/okta/oktatest) simulates the API it calls.
package oktaapi
