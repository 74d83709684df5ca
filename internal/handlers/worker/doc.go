// Package worker consumes lifecycle events from JetStream with a durable pull
// consumer and, per event: skips ids already processed (state dedupe), takes the
// person's lease, applies the event to the directory (versioned, so late events
// are harmless), converges the person and acks. Transient failures are delayed
// with NakWithDelay and never dead-lettered; permanent ones go to JML_DLQ after a
// few deliveries; undecodable messages go there at once. Requests of source
// sentry-audit (the audit-log follower) name a person by email and carry the
// audit entry: they find the person through the email link, never create one,
// skip the directory write and converge the stored desired state with the
// entry in the context. It must not parse configuration or know about webhook
// formats.
package worker
