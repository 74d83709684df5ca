// Package sentry is the production client for the Sentry HTTP API as used by the
// joiner/mover/leaver daemon: organization members, teams, projects, org auth
// tokens, audit logs and the SCIM v2 Users and Groups endpoints.
//
// It owns Sentry's wire formats, Link and SCIM pagination (as streaming
// iter.Seq2 iterators), rate-limit pacing from the X-Sentry-Rate-Limit-* headers
// through a shareable [Budget] with request priorities, safe retries with jittered
// backoff, the typed [*APIError] whose Is method matches the package sentinels
// (ErrNotFound, ErrIdPManaged, ...), and per-call OpenTelemetry spans. Tokens are
// never logged.
//
// It must not import the daemon's other packages (events, handlers, state) nor its
// own simulator, internal/sentry/sentrytest, outside tests; backends for [Budget]
// (Redis, ...) live elsewhere and implement the interface.
package sentry
