// Package jsstate keeps the records that must survive in JetStream (file
// storage; R3 in a cluster): the directory of desired state and its link
// table, access snapshots, the due queue of future-dated changes and
// reconcile runs in KV buckets (JML_DIRECTORY, JML_LINKS, JML_SNAPSHOTS,
// JML_DUE, JML_RUNS), the operator switches (JML_CONTROL: pause, the brakes'
// sliding window and approvals), the replica registry (JML_REPLICAS: one
// heartbeat per replica with the control revision it enforces), and the
// hash-chained evidence log in the stream
// JML_EVIDENCE. Concurrent writers on any number of replicas coordinate only
// through compare-and-set revisions and expected stream sequences; listings
// stream through ephemeral consumers instead of loading whole buckets. It
// implements contracts of package state and must not import Redis or the
// coordination backends.
package jsstate
