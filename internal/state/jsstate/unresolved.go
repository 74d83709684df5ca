package jsstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketUnresolved lists events whose person could not be identified (thin
// payloads without an email that neither the directory nor the provider API
// could resolve). They are acknowledged, counted and listed — never dropped
// silently.
const BucketUnresolved = "JML_UNRESOLVED"

// Unresolved is one such event.
type Unresolved struct {
	EventID    string          `json:"event_id"`
	Source     string          `json:"source"`
	Type       string          `json:"type"`
	PersonID   string          `json:"person_id,omitempty"`
	Reason     string          `json:"reason"`
	ReceivedAt time.Time       `json:"received_at"`
	Event      json.RawMessage `json:"event"`
}

// UnresolvedList stores unresolved events (kept 30 days).
type UnresolvedList struct {
	kv jetstream.KeyValue
	st jetstream.Stream
}

// OpenUnresolved opens the bucket.
func OpenUnresolved(ctx context.Context, js jetstream.JetStream, o Options) (*UnresolvedList, error) {
	o = o.withDefaults()
	kv, st, err := openKV(ctx, js, jetstream.KeyValueConfig{Bucket: BucketUnresolved, Description: "sentry-jml events whose person could not be identified",
		History: 1, TTL: 30 * 24 * time.Hour, Storage: o.storage(), Replicas: o.Replicas})
	if err != nil {
		return nil, err
	}
	return &UnresolvedList{kv: kv, st: st}, nil
}

// Put records u (keyed by its event id).
func (l *UnresolvedList) Put(ctx context.Context, u Unresolved) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	_, err = l.kv.Put(ctx, kvKey(u.Source+":"+u.EventID), b)
	return err
}

// Delete removes an entry once it has been handled.
func (l *UnresolvedList) Delete(ctx context.Context, source, eventID string) error {
	return l.kv.Delete(ctx, kvKey(source+":"+eventID))
}

// List streams the entries.
func (l *UnresolvedList) List(ctx context.Context) iter.Seq2[Unresolved, error] {
	return func(yield func(Unresolved, error) bool) {
		keys, err := liveKeys(ctx, l.st, BucketUnresolved, "")
		if err != nil {
			yield(Unresolved{}, fmt.Errorf("unresolved list: %w", err))
			return
		}
		for _, k := range keys {
			e, err := l.kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				yield(Unresolved{}, err)
				return
			}
			var u Unresolved
			if err := json.Unmarshal(e.Value(), &u); err != nil {
				yield(Unresolved{}, err)
				return
			}
			if !yield(u, nil) {
				return
			}
		}
	}
}
