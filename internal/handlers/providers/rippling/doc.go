// Package rippling is the Rippling provider: its webhook source (Source: the
// static token, partner-app events) and its API reader (Resolver: GET
// /platform/api/employees/{id}); ripplingtest simulates that API for tests. It
// must not publish, touch Sentry or read configuration, and must not import the
// registry (internal/handlers/providers), another provider's package or the
// receiver.
package rippling
