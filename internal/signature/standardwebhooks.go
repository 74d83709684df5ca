package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors returned by StandardWebhooks.Verify. Callers answer every one of them with
// the same 401 so an attacker learns nothing; the distinction is for logs and metrics.
var (
	ErrEmptySecret         = errors.New("signature: empty secret")
	ErrMissingHeaders      = errors.New("signature: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrInvalidTimestamp    = errors.New("signature: invalid webhook-timestamp")
	ErrMessageTooOld       = errors.New("signature: timestamp too old")
	ErrMessageTooNew       = errors.New("signature: timestamp too new")
	ErrNoMatchingSignature = errors.New("signature: no matching signature")
)

// DefaultTolerance is the window every Standard Webhooks reference library uses, in
// both directions.
const DefaultTolerance = 5 * time.Minute

const secretPrefix = "whsec_"

// StandardWebhooks verifies https://www.standardwebhooks.com signatures with one or
// more active secrets (rotation). It is safe for concurrent use.
type StandardWebhooks struct {
	tolerance time.Duration
	now       func() time.Time
	// macs holds, per key, HMAC-SHA256 states keyed with it: hmac.New
	// allocates two digests and its pads on every call, Reset on a used state
	// restores the keyed state without either.
	macs []*sync.Pool
}

// NewStandardWebhooks decodes each secret ("whsec_" + base64, padded or not; the
// prefix is optional). now may be nil (time.Now); tolerance 0 means DefaultTolerance.
func NewStandardWebhooks(secrets []string, tolerance time.Duration, now func() time.Time) (*StandardWebhooks, error) {
	if len(secrets) == 0 {
		return nil, ErrEmptySecret
	}
	v := &StandardWebhooks{tolerance: tolerance, now: now}
	if v.tolerance <= 0 {
		v.tolerance = DefaultTolerance
	}
	if v.now == nil {
		v.now = time.Now
	}
	for i, s := range secrets {
		key, err := DecodeStandardSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i+1, err)
		}
		v.macs = append(v.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
	}
	return v, nil
}

// DecodeStandardSecret turns "whsec_<base64>" (or the bare base64) into key bytes.
// Unpadded base64 is accepted, as the Python reference library does.
func DecodeStandardSecret(secret string) ([]byte, error) {
	s := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(secret), secretPrefix))
	if s == "" {
		return nil, ErrEmptySecret
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil {
		return nil, fmt.Errorf("signature: secret is not base64: %w", err)
	}
	if len(key) == 0 {
		return nil, ErrEmptySecret
	}
	return key, nil
}

// Sign returns the "v1,<base64>" signature of body for id and ts with key.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(ts.Unix(), 10), body))
}

func mac(key []byte, id, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	writeSigned(h, id, ts, body)
	return h.Sum(nil)
}

// writeSigned writes the signed content, "{id}.{timestamp}.{body}", to h.
func writeSigned(h hash.Hash, id, ts string, body []byte) {
	_, _ = io.WriteString(h, id)
	_, _ = h.Write([]byte{'.'})
	_, _ = io.WriteString(h, ts)
	_, _ = h.Write([]byte{'.'})
	_, _ = h.Write(body)
}

// Verify checks the three webhook-* header values against body. It accepts when any
// "v1," entry of the space-separated signature list matches any active secret, and
// the timestamp is within the tolerance of now in either direction. Entries with
// other versions (such as "v1a") are skipped.
func (v *StandardWebhooks) Verify(id, timestamp, signatures string, body []byte) error {
	if id == "" || timestamp == "" || signatures == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || sec < 0 {
		return ErrInvalidTimestamp
	}
	now := v.now()
	ts := time.Unix(sec, 0)
	if now.Sub(ts) > v.tolerance {
		return ErrMessageTooOld
	}
	if ts.Sub(now) > v.tolerance {
		return ErrMessageTooNew
	}
	want := make([][sha256.Size]byte, len(v.macs))
	for i, pool := range v.macs {
		h := pool.Get().(hash.Hash)
		h.Reset()
		writeSigned(h, id, timestamp, body)
		h.Sum(want[i][:0])
		pool.Put(h)
	}
	for _, entry := range strings.Fields(signatures) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil || len(got) != sha256.Size {
			continue
		}
		for _, w := range want {
			if hmac.Equal(got, w[:]) {
				return nil
			}
		}
	}
	return ErrNoMatchingSignature
}
