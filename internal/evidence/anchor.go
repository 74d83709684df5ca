package evidence

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// Anchor reasons.
const (
	ReasonPeriodic = "periodic"
	ReasonExport   = "export"
)

// KeyID is the first 16 hex digits of the SHA-256 of the raw public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// AnchorSigningBytes are the bytes an anchor's signature covers: the RFC
// 8785 canonical JSON of the anchor without "sig".
func AnchorSigningBytes(a state.Anchor) ([]byte, error) {
	a.Sig = ""
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("anchor: encode: %w", err)
	}
	c, err := jcs.Transform(b)
	if err != nil {
		return nil, fmt.Errorf("anchor: canonicalize: %w", err)
	}
	return c, nil
}

// EncodeAnchor is an anchor's line in an export: its canonical JSON, sig included.
func EncodeAnchor(a state.Anchor) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("anchor: encode: %w", err)
	}
	return jcs.Transform(b)
}

// SignAnchor signs the head (chain, seq, hash) at `at` with key.
func SignAnchor(key ed25519.PrivateKey, chain string, seq uint64, hash string, at time.Time, reason string) (state.Anchor, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(key) != ed25519.PrivateKeySize {
		return state.Anchor{}, errors.New("anchor: not an ed25519 private key")
	}
	a := state.Anchor{Type: state.AnchorType, Chain: chain, HeadSeq: seq, HeadHash: hash, At: at.UTC(), Reason: reason, KeyID: KeyID(pub)}
	msg, err := AnchorSigningBytes(a)
	if err != nil {
		return state.Anchor{}, err
	}
	a.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
	return a, nil
}

// VerifyAnchor checks a's signature against the trusted keys (by key id).
func VerifyAnchor(a state.Anchor, keys []ed25519.PublicKey) error {
	var pub ed25519.PublicKey
	for _, k := range keys {
		if KeyID(k) == a.KeyID {
			pub = k
			break
		}
	}
	if pub == nil {
		return fmt.Errorf("signed by key %s, which is not a trusted key", a.KeyID)
	}
	sig, err := base64.StdEncoding.DecodeString(a.Sig)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	msg, err := AnchorSigningBytes(a)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

// GenerateKey returns a new ed25519 private key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return priv, nil
}

// Key encodings: a private key is its 32-byte seed, a public key its 32
// raw bytes, each base64 (standard) on one line, or PEM ("PRIVATE KEY" /
// "PUBLIC KEY" of PKCS #8 / PKIX, as `openssl genpkey -algorithm ed25519`
// writes) — see ParsePrivateKey and ParsePublicKey.

// EncodePrivateKey is the base64 of key's seed.
func EncodePrivateKey(key ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(key.Seed())
}

// EncodePublicKey is the base64 of the raw public key.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// PublicKeyPEM is pub as a PKIX "PUBLIC KEY" PEM block (what `openssl
// pkeyutl -verify -pubin` reads).
func PublicKeyPEM(pub ed25519.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// ParsePrivateKey reads a base64 seed (32 bytes) or full key (64 bytes), or
// a PKCS #8 PEM block.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	s = strings.TrimSpace(s)
	if blk, _ := pem.Decode([]byte(s)); blk != nil {
		k, err := parsePKCS8(blk.Bytes)
		if err != nil {
			return nil, err
		}
		return k, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64 and not PEM")
	}
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		k := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
		if !k.Equal(ed25519.PrivateKey(b)) {
			return nil, errors.New("inconsistent ed25519 private key")
		}
		return k, nil
	}
	return nil, fmt.Errorf("an ed25519 key is 32 bytes (seed) or 64, got %d", len(b))
}

// ParsePublicKey reads a base64 raw public key (32 bytes) or a PKIX PEM block.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if blk, _ := pem.Decode([]byte(s)); blk != nil {
		return parsePKIX(blk.Bytes)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64 and not PEM")
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("an ed25519 public key is 32 bytes, got %d", len(b))
	}
	return ed25519.PublicKey(b), nil
}

// HeadReader reads the heads of the evidence chains (jsstate.EvidenceLog).
type HeadReader interface {
	// ChainHeads returns the last record of every chain with a record
	// stored at or after since minus jsstate.RangeSlack (zero: all).
	ChainHeads(ctx context.Context, since time.Time) ([]jsstate.ChainHead, error)
}

// Anchorer signs chain heads into the anchor log. Keep one per periodic
// job: it remembers how far it has looked.
type Anchorer struct {
	Head    HeadReader
	Anchors state.AnchorLog
	Key     ed25519.PrivateKey
	Now     func() time.Time
	Logger  *slog.Logger

	mu sync.Mutex
	// scanned is when the last AnchorHead began: the next looks at records
	// stored since then (less the slack), not at the whole log again.
	scanned time.Time
}

// PublicKey is the anchors' verification key.
func (a *Anchorer) PublicKey() ed25519.PublicKey {
	return a.Key.Public().(ed25519.PublicKey)
}

// AnchorHead signs the head of every chain that moved since its last run
// (the first run looks at the whole log), unless an anchor already signs it
// (a periodic anchor over an unchanged chain adds nothing). It returns the
// last anchor signed and whether any was stored.
func (a *Anchorer) AnchorHead(ctx context.Context) (state.Anchor, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	began := a.now()
	since := a.scanned
	heads, err := a.Head.ChainHeads(ctx, since)
	if err != nil {
		return state.Anchor{}, false, err
	}
	if len(heads) == 0 {
		a.scanned = began
		return state.Anchor{}, false, nil
	}
	type signedHead struct {
		chain string
		seq   uint64
		hash  string
	}
	signed := map[signedHead]bool{}
	var from time.Time
	if !since.IsZero() {
		from = since.Add(-jsstate.RangeSlack)
	}
	for an, err := range a.Anchors.Since(ctx, from) {
		if err != nil {
			return state.Anchor{}, false, err
		}
		signed[signedHead{an.Chain, an.HeadSeq, an.HeadHash}] = true
	}
	var last state.Anchor
	stored := false
	for _, h := range heads {
		if signed[signedHead{h.Chain, h.Seq, h.Hash}] {
			continue
		}
		an, err := a.Sign(ctx, h.Chain, h.Seq, h.Hash, ReasonPeriodic)
		if err != nil {
			return last, stored, err
		}
		last, stored = an, true
	}
	a.scanned = began
	return last, stored, nil
}

func (a *Anchorer) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Sign signs the given head and stores the anchor.
func (a *Anchorer) Sign(ctx context.Context, chain string, seq uint64, hash, reason string) (state.Anchor, error) {
	an, err := SignAnchor(a.Key, chain, seq, hash, a.now(), reason)
	if err != nil {
		return state.Anchor{}, err
	}
	if err := a.Anchors.Add(ctx, an); err != nil {
		return state.Anchor{}, err
	}
	if a.Logger != nil {
		a.Logger.DebugContext(ctx, "evidence chain head signed", "chain", chain, "seq", seq, "reason", reason, "key_id", an.KeyID)
	}
	return an, nil
}
