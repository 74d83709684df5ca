// Package converge brings one person's Sentry access to their desired state: it
// reads Sentry's actual state, computes a plan of steps under the guards
// (protected accounts, the daemon's own member, disputed matches, roles it may not
// manage) and applies each step after re-checking the person's lease. Convergence
// is level-triggered: it acts on the directory record, never on the event that
// triggered it, so duplicates and reordering are harmless. It talks to Sentry
// through a small interface and must not import JetStream or the state backends.
package converge
