// Package reconcile brings the whole Sentry organization back to policy: it
// streams every member, team membership and directory person, classifies them
// (linked, missing, orphan, disputed), plans each person with convergence's
// pure planning, applies the plan under removal brakes (a run above the
// policy's max_removals or max_removal_ratio halts, is stored and waits for an
// approval that re-checks each stored step), and runs the organization-wide
// jobs: pending invites, team structure as code, token hygiene, the SSO report
// and the access review. It depends on convergence, policy, the Sentry client
// and the record contracts in internal/state; it must not import a state
// backend or anything under cmd.
package reconcile
