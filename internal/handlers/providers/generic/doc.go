// Package generic is the generic provider: its webhook source verifies Standard
// Webhooks signatures and parses the generic event schema (internal/events). It
// has no API reader and no simulator. It must not publish, touch Sentry or read
// configuration, and must not import the registry
// (internal/handlers/providers), another provider's package or the receiver.
package generic
