package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
)

// Errors returned by the provider verifiers in this file. As with Standard
// Webhooks, every one of them is a 401 to the sender.
var (
	ErrMissingSignature = errors.New("signature: missing signature header")
	ErrMalformed        = errors.New("signature: malformed signature")
	ErrMissingToken     = errors.New("signature: missing authorization")
	ErrTokenMismatch    = errors.New("signature: authorization does not match")
)

// Encoding is how a provider writes its MAC into a header.
type Encoding int

// The encodings HR providers use.
const (
	// Hex is lowercase hexadecimal (BambooHR, Gusto, Deel); upper case is accepted.
	Hex Encoding = iota
	// Base64 is standard, padded base64 (HiBob); unpadded is accepted.
	Base64
)

// HMAC verifies a provider's "MAC over some bytes of the request" scheme with one
// or more active keys (rotation). Which bytes are signed is the caller's business:
// it passes them as parts, which are concatenated without a separator. It is safe
// for concurrent use.
type HMAC struct {
	hash func() hash.Hash
	enc  Encoding
	keys [][]byte
}

// NewHMAC returns a verifier for the given secrets. Each secret is used as the
// key bytes as written (HR providers hand out printable keys and sign with their
// UTF-8 bytes); surrounding white space is trimmed. Empty secrets are an error.
func NewHMAC(h func() hash.Hash, enc Encoding, secrets []string) (*HMAC, error) {
	if len(secrets) == 0 {
		return nil, ErrEmptySecret
	}
	v := &HMAC{hash: h, enc: enc}
	for _, s := range secrets {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, ErrEmptySecret
		}
		v.keys = append(v.keys, []byte(s))
	}
	return v, nil
}

// Sign returns the encoded MAC of the concatenated parts under key.
func (v *HMAC) Sign(key []byte, parts ...[]byte) string {
	sum := v.mac(key, parts)
	if v.enc == Base64 {
		return base64.StdEncoding.EncodeToString(sum)
	}
	return hex.EncodeToString(sum)
}

func (v *HMAC) mac(key []byte, parts [][]byte) []byte {
	m := hmac.New(v.hash, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// Verify checks got (the header value) against the MAC of the concatenated parts
// under every active key, in constant time per key.
func (v *HMAC) Verify(got string, parts ...[]byte) error {
	got = strings.TrimSpace(got)
	if got == "" {
		return ErrMissingSignature
	}
	sig, err := v.decode(got)
	if err != nil {
		return ErrMalformed
	}
	size := v.hash().Size()
	if len(sig) != size {
		return ErrMalformed
	}
	ok := 0
	for _, key := range v.keys {
		ok |= subtle.ConstantTimeCompare(sig, v.mac(key, parts))
	}
	if ok != 1 {
		return ErrNoMatchingSignature
	}
	return nil
}

func (v *HMAC) decode(s string) ([]byte, error) {
	if v.enc == Base64 {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
		}
		return b, err
	}
	return hex.DecodeString(s)
}

// StaticToken checks a header that carries a shared secret as is (Personio's
// TOKEN auth, Rippling's optional bearer token). Several tokens may be active.
type StaticToken struct {
	tokens [][sha256.Size]byte // SHA-256 of each accepted header value
}

// NewStaticToken returns a checker for the given tokens. A token is the whole
// header value the provider sends; "Bearer <token>" is accepted for a token
// configured without the prefix, so operators may write either form.
func NewStaticToken(tokens []string) (*StaticToken, error) {
	if len(tokens) == 0 {
		return nil, ErrEmptySecret
	}
	st := &StaticToken{}
	for _, t := range tokens {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, ErrEmptySecret
		}
		st.tokens = append(st.tokens, sha256.Sum256([]byte(t)))
		if !strings.HasPrefix(t, "Bearer ") && !strings.HasPrefix(t, "Basic ") {
			st.tokens = append(st.tokens, sha256.Sum256([]byte("Bearer "+t)))
		}
	}
	return st, nil
}

// Verify compares the header value with every active token in constant time:
// the SHA-256 digests are compared, so neither the position of the first
// difference nor the token's length shows in the timing.
func (st *StaticToken) Verify(header string) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrMissingToken
	}
	got := sha256.Sum256([]byte(header))
	ok := 0
	for _, t := range st.tokens {
		ok |= subtle.ConstantTimeCompare(got[:], t[:])
	}
	if ok != 1 {
		return ErrTokenMismatch
	}
	return nil
}

// Equal compares two secrets in constant time by their SHA-256 digests, so the
// timing reveals neither where they differ nor their lengths.
func Equal(a, b string) bool {
	da, db := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(da[:], db[:]) == 1
}
