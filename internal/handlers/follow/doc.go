// Package follow is the audit-log follower: it reads the Sentry organization's
// audit log (GET /api/0/organizations/{org}/audit-logs/, newest first) from a
// durable cursor, and turns each entry that touches a member (an invite, an
// added or removed member, an accepted invite, a changed role, a joined or
// left team) into a convergence request for that person, published to
// JML_EVENTS as an event of source events.SourceSentryAudit that carries the
// entry (events.OutOfBand). The worker handles it like any event — the
// person's lease, the safety gate, evidence — but converges the stored
// desired state instead of applying HR data.
//
// One Poll reads pages until it reaches the cursor: one API call when nothing
// happened. Entries made by the daemon's own service user are skipped. Polls
// run at the lowest rate-budget priority (sentry.PriorityReconcile). The cursor
// is advanced with compare-and-set only once every request of a poll was
// stored, so a crash re-reads entries (the requests' Nats-Msg-Id and the
// worker's dedupe make that harmless) rather than losing them.
//
// A gap — the cursor's entry no longer in the log (retention, or an outage
// longer than the log keeps), more new entries than one poll may read, or an
// entry or page whose shape the follower does not recognise (the endpoint is
// experimental in Sentry) — raises an audit_gap alert and requests a full
// reconcile; the cursor then restarts at the newest entry. The follower never
// stops silently. The package must not parse configuration; the caller runs
// Poll on the scheduler's leader every JML_AUDIT_POLL.
package follow
