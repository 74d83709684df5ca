// Package handlers is the home of the daemon's behaviour: webhook sources
// (subpackage sources), the HTTP receiver that turns them into JetStream messages
// (receiver), the worker that consumes them (worker) and convergence of one
// person's Sentry access (converge), and the audit-log follower that turns
// changes made by hand in Sentry into convergence requests (follow). Subpackages take their dependencies as
// arguments; none of them parses configuration.
package handlers
