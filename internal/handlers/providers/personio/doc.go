// Package personio is the Personio provider: its webhook source (Source: the
// static token, the dataless envelope) and its API reader (Resolver: persons
// and employments, with client-credentials tokens); personiotest simulates that
// API for tests. It must not publish, touch Sentry or read configuration, and
// must not import the registry (internal/handlers/providers), another
// provider's package or the receiver.
package personio
