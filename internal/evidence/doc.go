// Package evidence makes the daemon's hash-chained evidence log checkable by
// an auditor: it signs the chain heads with ed25519 (anchors), exports a time
// range as JSON Lines of the exact stored bytes followed by the anchors that
// sign them and a signed manifest of the chains in the file, and verifies
// such an export (or the live log, exported first).
//
// Verification does not depend on one chain layout: every record line
// carries its own hash, its chain ("" for the fleet chain of the records
// written before per-person chains, else the person's chain), its
// sequence number in that chain and its predecessor's hash; every anchor
// names the chain, sequence and hash of the head it signs. See
// docs/evidence.md for the algorithm in a few lines of standard tooling.
package evidence
