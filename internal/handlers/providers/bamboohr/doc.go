// Package bamboohr is the BambooHR provider: its webhook source (Source: the
// HMAC signature and timestamp, event-based and field-based payloads) and its
// API reader (Resolver: GET /v1/employees/{id}); bamboohrtest simulates that
// API for tests. It must not publish, touch Sentry or read configuration, and
// must not import the registry (internal/handlers/providers), another
// provider's package or the receiver.
package bamboohr
