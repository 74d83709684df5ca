// Package providers is the one registry of identity sources: each provider
// (generic, okta, the six HR systems, scim) has one entry saying its name (the
// route /hooks/<name>, the events' Source and the JML_SOURCE_<NAME>_*
// variables), its precedence class in the directory, how its webhook source
// and its API reader are built and what doctor warns about when its API is
// not configured. Each provider but scim lives in its own package below this
// one, providers/<name>, which holds its webhook source, its API reader (if
// it has one) and their tests, with its API simulator in
// providers/<name>/<name>test (okta: oktaapi, its API client, and oktatest);
// scim is internal/handlers/scimserver, built by internal/app. The simulators
// are listed by this package's tests, not by the registry: they import
// testing, which must stay out of the binaries. Settings is the one shape a
// provider's configuration takes; cmd/internal/config fills it from the
// environment. It must not read configuration, publish, or touch Sentry; a
// provider package must not import the registry, another provider's package
// or the receiver.
package providers
