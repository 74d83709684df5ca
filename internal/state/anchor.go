package state

import (
	"context"
	"iter"
	"time"
)

// Anchor is a signed statement that a chain's head, at a time, was the
// record with HeadSeq and HeadHash. It names the head it signs, so it does
// not depend on how records are chained: a verifier only needs the record
// with that hash. Sig is the base64 (standard, padded) ed25519 signature of
// the RFC 8785 canonical JSON of the anchor without "sig"; KeyID is the
// first 16 hex digits of the SHA-256 of the raw 32-byte public key.
type Anchor struct {
	Type     string    `json:"type"` // always "anchor" (tells anchors from records in an export)
	Chain    string    `json:"chain,omitempty"`
	HeadSeq  uint64    `json:"head_seq"`
	HeadHash string    `json:"head_hash"`
	At       time.Time `json:"at"`
	// Reason is "periodic" or "export".
	Reason string `json:"reason,omitempty"`
	KeyID  string `json:"key_id"`
	Sig    string `json:"sig,omitempty"`
}

// AnchorType is Anchor.Type.
const AnchorType = "anchor"

// AnchorLog keeps signed anchors, append-only.
type AnchorLog interface {
	// Add stores a.
	Add(ctx context.Context, a Anchor) error
	// Since streams the anchors stored at or after from, oldest first.
	Since(ctx context.Context, from time.Time) iter.Seq2[Anchor, error]
	// Last returns the newest anchor, or an error wrapping ErrNotFound.
	Last(ctx context.Context) (Anchor, error)
}
