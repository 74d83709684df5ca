// Package sources turns provider webhooks into normalized events: each source
// verifies its provider's signature or token scheme and parses its payload. It owns
// provider formats only; it must not publish, touch Sentry or read configuration.
package sources
