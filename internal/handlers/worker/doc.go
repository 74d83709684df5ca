// Package worker consumes lifecycle events from JetStream with a durable pull
// consumer and, per event: skips ids already processed (state dedupe), finds
// the person, takes the person's lease, applies the event to the directory
// (versioned, so late events are harmless), then reconciles that person's key
// (converge.Reconciler) and acks. A wait the reconciliation returns
// (Result.RequeueAfter) is a delayed redelivery, not a failure; transient
// failures are delayed with NakWithDelay and never dead-lettered; permanent
// ones go to JML_DLQ after a few deliveries; terminal ones
// (converge.IsTerminal) and undecodable messages go there at once. Requests of
// source sentry-audit (the audit-log follower) name a person by email and carry
// the audit entry: they find the person through the email link, never create
// one, skip the directory write and reconcile the stored desired state with the
// entry in the context. It must not parse configuration or know about webhook
// formats.
package worker
