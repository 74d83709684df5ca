// Package hibob is the HiBob provider: its webhook source (Source:
// Bob-Signature, webhooks v2 payloads, the connection ping) and its API reader
// (Resolver: the people API); hibobtest simulates that API for tests. It must
// not publish, touch Sentry or read configuration, and must not import the
// registry (internal/handlers/providers), another provider's package or the
// receiver.
package hibob
