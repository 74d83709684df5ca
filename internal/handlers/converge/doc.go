// Package converge brings one person's Sentry access to their desired state: it
// reads Sentry's actual state, computes a plan of steps under the guards
// (protected accounts, the daemon's own member, disputed matches, roles it may not
// manage) and applies each step; the person's lease is checked right before each
// mutation leaves the Sentry client. Convergence is level-triggered: it acts on
// the directory record, never on the event that triggered it, so duplicates and
// reordering are harmless. Reconciler converges by key, after controller-runtime's
// Reconcile contract: under the person's lease it reads the record, plans and
// applies, and returns waits in Result.RequeueAfter and terminal errors marked
// (TerminalError). It uses the state contracts' types (state.Snapshot,
// state.Evidence) directly. It talks to Sentry through a small interface and must
// not import JetStream or the state backends.
//
// A convergence started by the audit-log follower carries the audit entry
// (WithOutOfBand): each planned step is classified by the kind of hand-made
// change it undoes (managed_teams, org_role, leavers, membership) and the
// policy's out_of_band action decides whether it runs (revert) or is left in
// place (report, adopt); the evidence record and an out_of_band alert name the
// entry's actor, and jml_out_of_band_changes counts them.
package converge
