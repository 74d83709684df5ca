// Package gusto is the Gusto provider: its webhook source (Source:
// X-Gusto-Signature, the verification POST that hands over the signing key,
// kept in a KeyStore that internal/app provides) and its API reader (Resolver:
// GET /v1/employees/{uuid}); gustotest simulates that API for tests. The
// registry marks it app-built: internal/app builds the source with its
// KeyStore. It must not publish, touch Sentry or read configuration, and must
// not import the registry (internal/handlers/providers), another provider's
// package or the receiver.
package gusto
