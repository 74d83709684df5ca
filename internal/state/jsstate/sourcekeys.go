package jsstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketSourceKeys holds signing keys that providers hand over at run time
// (Gusto's verification token), shared by every receiver replica.
const BucketSourceKeys = "JML_SOURCE_KEYS"

// ErrAlreadyShown: a key is shown to an operator once.
var ErrAlreadyShown = errors.New("the key was already shown once")

type sourceKey struct {
	Tokens  []string  `json:"tokens"`
	Shown   bool      `json:"shown"`
	SavedAt time.Time `json:"saved_at"`
	// ArmedUntil, while in the future, lets exactly one verification POST
	// hand over a key (jml sources arm gusto); claiming the key disarms.
	ArmedUntil time.Time `json:"armed_until,omitzero"`
	ArmedBy    string    `json:"armed_by,omitempty"`
}

// Arming bounds: `jml sources arm` opens DefaultArmWindow unless told
// otherwise, and never more than MaxArmWindow.
const (
	DefaultArmWindow = 10 * time.Minute
	MaxArmWindow     = time.Hour
)

// SourceKeys stores one provider's run-time keys, and the operator's arming
// that lets one verification request hand a key over.
type SourceKeys struct {
	kv     jetstream.KeyValue
	source string
	now    func() time.Time
}

// OpenSourceKeys opens the key store for source (e.g. "gusto").
func OpenSourceKeys(ctx context.Context, js jetstream.JetStream, o Options, source string) (*SourceKeys, error) {
	o = o.withDefaults()
	kv, _, err := openKV(ctx, js, jetstream.KeyValueConfig{Bucket: BucketSourceKeys, Description: "sentry-jml provider signing keys received at run time",
		History: 5, Storage: o.storage(), Replicas: o.Replicas})
	if err != nil {
		return nil, err
	}
	return &SourceKeys{kv: kv, source: source, now: time.Now}, nil
}

func (s *SourceKeys) read(ctx context.Context) (sourceKey, uint64, error) {
	e, err := s.kv.Get(ctx, s.source)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sourceKey{}, 0, nil
	}
	if err != nil {
		return sourceKey{}, 0, fmt.Errorf("source keys %s: %w", s.source, err)
	}
	var k sourceKey
	if err := json.Unmarshal(e.Value(), &k); err != nil {
		return sourceKey{}, 0, fmt.Errorf("source keys %s: decode: %w", s.source, err)
	}
	return k, e.Revision(), nil
}

func (s *SourceKeys) write(ctx context.Context, fn func(*sourceKey) bool) (sourceKey, error) {
	for range 50 {
		k, rev, err := s.read(ctx)
		if err != nil {
			return sourceKey{}, err
		}
		if !fn(&k) {
			return k, nil
		}
		b, _ := json.Marshal(k)
		if rev == 0 {
			_, err = s.kv.Create(ctx, s.source, b)
		} else {
			_, err = s.kv.Update(ctx, s.source, b, rev)
		}
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return sourceKey{}, fmt.Errorf("source keys %s: %w", s.source, err)
		}
	}
	return sourceKey{}, errors.New("source keys: too much contention")
}

// ClaimVerificationToken stores token when the source is armed and disarms it
// (gusto.KeyStore): exactly one verification request per arming hands a key
// over, fleet-wide, since the write is a compare-and-set on one KV record. A
// token already stored is accepted again without an arming. saved is false,
// with a nil error, when the source is not armed.
func (s *SourceKeys) ClaimVerificationToken(ctx context.Context, token string) (saved bool, err error) {
	_, err = s.write(ctx, func(k *sourceKey) bool {
		saved = false
		if slices.Contains(k.Tokens, token) {
			saved = true
			return false
		}
		now := s.now()
		if !now.Before(k.ArmedUntil) {
			return false
		}
		k.Tokens, k.Shown, k.SavedAt = append(k.Tokens, token), false, now.UTC()
		k.ArmedUntil, k.ArmedBy = time.Time{}, ""
		saved = true
		return true
	})
	if err != nil {
		return false, err
	}
	return saved, nil
}

// Arm lets the next verification request (within d, bounded by MaxArmWindow;
// 0 means DefaultArmWindow) hand over a key. by names the operator.
func (s *SourceKeys) Arm(ctx context.Context, d time.Duration, by string) (time.Time, error) {
	if d <= 0 {
		d = DefaultArmWindow
	}
	if d > MaxArmWindow {
		return time.Time{}, fmt.Errorf("source keys %s: an arming lasts at most %s", s.source, MaxArmWindow)
	}
	k, err := s.write(ctx, func(k *sourceKey) bool {
		k.ArmedUntil, k.ArmedBy = s.now().Add(d).UTC(), by
		return true
	})
	return k.ArmedUntil, err
}

// ArmedUntil is the end of the current arming (zero or past when not armed).
func (s *SourceKeys) ArmedUntil(ctx context.Context) (time.Time, error) {
	k, _, err := s.read(ctx)
	return k.ArmedUntil, err
}

// VerificationTokens returns the stored tokens (gusto.KeyLoader).
func (s *SourceKeys) VerificationTokens(ctx context.Context) ([]string, error) {
	k, _, err := s.read(ctx)
	return k.Tokens, err
}

// ShowOnce returns the newest token the first time it is asked for, and
// ErrAlreadyShown afterwards (or ErrKeyNotFound-like emptiness when none).
func (s *SourceKeys) ShowOnce(ctx context.Context) (string, time.Time, error) {
	var token string
	var saved time.Time
	var shown bool
	_, err := s.write(ctx, func(k *sourceKey) bool {
		if len(k.Tokens) == 0 {
			return false
		}
		if k.Shown {
			shown = true
			return false
		}
		token, saved, k.Shown = k.Tokens[len(k.Tokens)-1], k.SavedAt, true
		return true
	})
	switch {
	case err != nil:
		return "", time.Time{}, err
	case shown:
		return "", time.Time{}, ErrAlreadyShown
	case token == "":
		return "", time.Time{}, fmt.Errorf("no key received from %s yet", s.source)
	}
	return token, saved, nil
}
