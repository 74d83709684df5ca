// Package providers is the one registry of identity sources: each provider
// (generic, okta, the six HR systems, scim) has one entry saying its name (the
// route /hooks/<name>, the events' Source and the JML_SOURCE_<NAME>_*
// variables), its precedence class in the directory, how its webhook source is
// built (internal/handlers/sources), how its API reader is built
// (internal/handlers/resolve), its simulator for tests
// (internal/handlers/resolve/resolvetest, named, not imported) and what doctor
// warns about when its API is not configured. Settings is the one shape a
// provider's configuration takes; cmd/internal/config fills it from the
// environment. It must not read configuration, publish, or touch Sentry.
package providers
