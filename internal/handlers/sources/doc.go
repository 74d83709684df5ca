// Package sources is the contract between the receiver and the providers'
// webhook sources: the Source interface (verify a provider's signature or
// token scheme and parse its payload into normalized events), Config, Parsed,
// ErrUnauthorized, the optional interfaces (Handshaker, Authenticator, Gate,
// PartialDelivery) and the helpers the sources share (ids, times, JSON
// objects, checked events). The sources themselves live in
// internal/handlers/providers/<name>; sourcestest holds their tests' shared
// helpers. It owns no provider's format; it must not publish, touch Sentry,
// read configuration or import a provider package.
package sources
