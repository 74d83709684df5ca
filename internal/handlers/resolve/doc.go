// Package resolve is the contract of re-reading a person from a provider's
// API when a webhook was thin (ids, no email or status) or unsigned: the
// Resolver interface, its errors, Config, BySource to pick one by event
// source, and the HTTP plumbing the readers share (Client, CheckID,
// WorkEmail). The readers themselves live in internal/handlers/providers/<name>
// and are built through the registry (internal/handlers/providers). It is
// called by the worker, never by the receiver, which must answer at JetStream
// speed. It must not import the receiver, NATS, Sentry, configuration or a
// provider package; resolvetest holds the plumbing the provider API simulators
// share.
package resolve
