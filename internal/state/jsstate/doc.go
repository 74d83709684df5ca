// Package jsstate keeps the records that must survive — starting with the
// directory of desired state — in JetStream KV buckets (file storage; R3 in a
// cluster), using compare-and-set revisions for safe concurrent updates. It
// implements contracts of package state and must not import Redis or the
// coordination backends.
package jsstate
