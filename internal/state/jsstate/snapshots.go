package jsstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Snapshots is a state.Snapshots on the KV bucket JML_SNAPSHOTS: one key per
// person whose revision history (SnapshotHistory deep) is the list.
type Snapshots struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

var _ state.Snapshots = (*Snapshots)(nil)

// OpenSnapshots creates (or opens) the snapshot bucket.
func OpenSnapshots(ctx context.Context, js jetstream.JetStream, o Options) (*Snapshots, error) {
	o = o.withDefaults()
	kv, _, err := openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      BucketSnapshots,
		Description: "sentry-jml access snapshots taken before removals",
		History:     SnapshotHistory,
		Storage:     o.storage(),
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, err
	}
	return &Snapshots{kv: kv, now: o.Now}, nil
}

// Put implements state.Snapshots. A zero TakenAt is set to now.
func (s *Snapshots) Put(ctx context.Context, snap state.Snapshot) error {
	if snap.PersonKey == "" {
		return errors.New("snapshot: person key is required")
	}
	if snap.TakenAt.IsZero() {
		snap.TakenAt = s.now()
	}
	snap.TakenAt = snap.TakenAt.UTC()
	b, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("snapshot %s: encode: %w", snap.PersonKey, err)
	}
	if _, err := s.kv.Put(ctx, kvKey(snap.PersonKey), b); err != nil {
		return fmt.Errorf("snapshot %s: %w", snap.PersonKey, err)
	}
	return nil
}

// Latest implements state.Snapshots.
func (s *Snapshots) Latest(ctx context.Context, personKey string) (state.Snapshot, error) {
	e, err := s.kv.Get(ctx, kvKey(personKey))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return state.Snapshot{}, fmt.Errorf("snapshot %s: %w", personKey, state.ErrNotFound)
	}
	if err != nil {
		return state.Snapshot{}, fmt.Errorf("snapshot %s: %w", personKey, err)
	}
	var snap state.Snapshot
	if err := json.Unmarshal(e.Value(), &snap); err != nil {
		return state.Snapshot{}, fmt.Errorf("snapshot %s: decode: %w", personKey, err)
	}
	return snap, nil
}

// List implements state.Snapshots.
func (s *Snapshots) List(ctx context.Context, personKey string) ([]state.Snapshot, error) {
	hist, err := s.kv.History(ctx, kvKey(personKey))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshots %s: %w", personKey, err)
	}
	out := make([]state.Snapshot, 0, len(hist))
	for _, e := range hist {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		var snap state.Snapshot
		if err := json.Unmarshal(e.Value(), &snap); err != nil {
			return nil, fmt.Errorf("snapshots %s: decode revision %d: %w", personKey, e.Revision(), err)
		}
		out = append(out, snap)
	}
	return out, nil
}
