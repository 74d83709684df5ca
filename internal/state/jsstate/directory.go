package jsstate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// BucketDirectory is the KV bucket holding one record per person.
const BucketDirectory = "JML_DIRECTORY"

// Directory is a state.Directory on a JetStream KV bucket.
type Directory struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

var _ state.Directory = (*Directory)(nil)

// Options size the buckets.
type Options struct {
	Replicas int // 1 or 3
	Memory   bool
	Now      func() time.Time
}

// OpenDirectory creates (or opens) the directory bucket.
func OpenDirectory(ctx context.Context, js jetstream.JetStream, o Options) (*Directory, error) {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketDirectory,
		Description: "sentry-jml desired state per person",
		History:     5,
		Storage:     storage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketDirectory, err)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Directory{kv: kv, now: now}, nil
}

// kvKey maps a person key (which may hold any character) to a valid KV key.
func kvKey(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// Get implements state.Directory.
func (d *Directory) Get(ctx context.Context, key string) (state.PersonRecord, error) {
	rec, _, err := d.get(ctx, key)
	return rec, err
}

func (d *Directory) get(ctx context.Context, key string) (state.PersonRecord, uint64, error) {
	e, err := d.kv.Get(ctx, kvKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return state.PersonRecord{}, 0, fmt.Errorf("directory %s: %w", key, state.ErrNotFound)
	}
	if err != nil {
		return state.PersonRecord{}, 0, fmt.Errorf("directory get %s: %w", key, err)
	}
	var rec state.PersonRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return state.PersonRecord{}, 0, fmt.Errorf("directory decode %s: %w", key, err)
	}
	return rec, e.Revision(), nil
}

// Apply implements state.Directory.
func (d *Directory) Apply(ctx context.Context, key string, p events.Person, v state.Version, eventID string) (state.PersonRecord, bool, error) {
	applied := false
	rec, err := d.update(ctx, key, func(old state.PersonRecord, exists bool) (state.PersonRecord, bool, error) {
		if exists && v.Older(old.Version, p.Status == events.Terminated, old.Person.Status == events.Terminated) {
			applied = false
			return old, false, nil
		}
		applied = true
		old.Key = key
		old.Person = state.Merge(old.Person, p)
		old.Version = v
		old.LastEventID = eventID
		return old, true, nil
	})
	return rec, applied, err
}

// Update implements state.Directory.
func (d *Directory) Update(ctx context.Context, key string, fn func(state.PersonRecord) (state.PersonRecord, error)) (state.PersonRecord, error) {
	return d.update(ctx, key, func(old state.PersonRecord, exists bool) (state.PersonRecord, bool, error) {
		if !exists {
			return old, false, fmt.Errorf("directory %s: %w", key, state.ErrNotFound)
		}
		n, err := fn(old)
		return n, err == nil, err
	})
}

// update runs a compare-and-set loop: read, change, write at the read revision.
func (d *Directory) update(ctx context.Context, key string, fn func(old state.PersonRecord, exists bool) (state.PersonRecord, bool, error)) (state.PersonRecord, error) {
	for attempt := 0; ; attempt++ {
		old, rev, err := d.get(ctx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return state.PersonRecord{}, err
		}
		n, write, err := fn(old, exists)
		if err != nil || !write {
			return n, err
		}
		n.UpdatedAt = d.now().UTC()
		b, err := json.Marshal(n)
		if err != nil {
			return state.PersonRecord{}, fmt.Errorf("directory encode %s: %w", key, err)
		}
		if exists {
			_, err = d.kv.Update(ctx, kvKey(key), b, rev)
		} else {
			_, err = d.kv.Create(ctx, kvKey(key), b)
		}
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return state.PersonRecord{}, fmt.Errorf("directory write %s: %w", key, err)
		}
		if attempt >= 50 {
			return state.PersonRecord{}, fmt.Errorf("directory write %s: too much contention: %w", key, err)
		}
		if err := ctx.Err(); err != nil {
			return state.PersonRecord{}, err
		}
	}
}
