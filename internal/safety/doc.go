// Package safety owns the one gate every Sentry mutation passes, whatever
// started it (an event, a scheduled or manual reconcile, an approved plan,
// team structure, token hygiene, the invites job, a DLQ replay): the
// operator's pause, the fleet-wide brakes on removals (a sliding 60 s window
// kept in JetStream; once halted, every removal on every path is held until
// enough operators approve) and the caller's lease. The Sentry client calls
// Gate.Admit right before each mutating request leaves and has no other way
// to change Sentry. The package also keeps this replica's heartbeat in the
// replica registry, which is how `jml pause` learns that every live replica
// enforces the pause and has nothing left in flight.
package safety
