// Package handlers is the home of the daemon's behaviour: the providers
// (subpackage providers: the registry, and one package per provider with its
// webhook source and API reader), the contracts they implement (sources,
// resolve), the HTTP receiver that turns webhooks into JetStream messages
// (receiver), the worker that consumes them (worker) and convergence of one
// person's Sentry access (converge), and the audit-log follower that turns
// changes made by hand in Sentry into convergence requests (follow).
// Subpackages take their dependencies as arguments; none of them parses
// configuration.
package handlers
