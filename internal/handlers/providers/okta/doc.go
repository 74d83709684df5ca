// Package okta is the Okta provider: its webhook source answers Okta Event
// Hooks (the one-time verification GET, the Authorization header, deliveries of
// System Log events), completes thin events through the Okta API when it is
// configured, and lists missed events for the System Log catch-up (CatchUp).
// Its API client is the subpackage oktaapi, and oktatest simulates that API for
// tests. It has no API reader for the worker: its API feeds the catch-up. It
// must not publish, touch Sentry or read configuration, and must not import the
// registry (internal/handlers/providers), another provider's package or the
// receiver.
package okta
