package jsstate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// BucketDirectory is the KV bucket holding one record per person.
const BucketDirectory = "JML_DIRECTORY"

// Directory is a state.Directory on a JetStream KV bucket, with the link
// table in its own bucket (BucketLinks).
type Directory struct {
	kv    jetstream.KeyValue
	st    jetstream.Stream
	links jetstream.KeyValue
	now   func() time.Time
	skew  time.Duration
}

var _ state.Directory = (*Directory)(nil)

// OpenDirectory creates (or opens) the directory and link buckets.
func OpenDirectory(ctx context.Context, js jetstream.JetStream, o Options) (*Directory, error) {
	o = o.withDefaults()
	kv, st, err := openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      BucketDirectory,
		Description: "sentry-jml desired state per person",
		History:     5,
		Storage:     o.storage(),
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, err
	}
	links, _, err := openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      BucketLinks,
		Description: "sentry-jml link table: (source, source id) -> person key",
		History:     1,
		Storage:     o.storage(),
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, err
	}
	return &Directory{kv: kv, st: st, links: links, now: o.Now, skew: o.MaxClockSkew}, nil
}

// kvKey maps a person key (which may hold any character) to a valid KV key.
func kvKey(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// Get implements state.Directory. A version stored more than the clock-skew
// tolerance ahead of the clock is read clamped (state.ClampFuture), and so
// written clamped by the next Apply or Update of the record.
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
	rec, _ = state.ClampFuture(rec, d.now(), d.skew)
	return rec, e.Revision(), nil
}

// Apply implements state.Directory.
func (d *Directory) Apply(ctx context.Context, key string, p events.Person, v state.Version, eventID string) (state.PersonRecord, bool, error) {
	applied := false
	rec, err := d.update(ctx, key, func(old state.PersonRecord, exists bool) (state.PersonRecord, bool, error) {
		if !exists {
			old = state.PersonRecord{}
		}
		rec, ok := state.ApplyEvent(old, key, p, v, eventID)
		applied = ok
		return rec, ok, nil
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

// List implements state.Directory: a key scan delivers the last revision of
// every key, at most a few hundred records buffered at a time; a record
// rewritten during the listing is still listed (see scan).
func (d *Directory) List(ctx context.Context) iter.Seq2[state.PersonRecord, error] {
	return func(yield func(state.PersonRecord, error) bool) {
		cfg := jetstream.ConsumerConfig{
			FilterSubject: "$KV." + BucketDirectory + ".>",
			DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		}
		for m, err := range scan(ctx, d.st, cfg) {
			if err != nil {
				yield(state.PersonRecord{}, fmt.Errorf("directory list: %w", err))
				return
			}
			if isKVDelete(m) {
				continue
			}
			var rec state.PersonRecord
			if err := json.Unmarshal(m.Data(), &rec); err != nil {
				if !yield(state.PersonRecord{}, fmt.Errorf("directory list: decode %s: %w", m.Subject(), err)) {
					return
				}
				continue
			}
			rec, _ = state.ClampFuture(rec, d.now(), d.skew)
			if !yield(rec, nil) {
				return
			}
		}
	}
}

// link is a JML_LINKS value.
type link struct {
	PersonKey string    `json:"person_key"`
	LinkedAt  time.Time `json:"linked_at"`
}

func linkKey(source, sourceID string) string { return kvKey(source) + "." + kvKey(sourceID) }

// Link implements state.Directory.
func (d *Directory) Link(ctx context.Context, source, sourceID, personKey string) error {
	if source == "" || sourceID == "" || personKey == "" {
		return fmt.Errorf("link (%q, %q) -> %q: source, source id and person key are required", source, sourceID, personKey)
	}
	b, err := json.Marshal(link{PersonKey: personKey, LinkedAt: d.now().UTC()})
	if err != nil {
		return fmt.Errorf("link %s/%s: encode: %w", source, sourceID, err)
	}
	if _, err := d.links.Put(ctx, linkKey(source, sourceID), b); err != nil {
		return fmt.Errorf("link %s/%s: %w", source, sourceID, err)
	}
	return nil
}

// ClaimLink links (source, sourceID) to personKey unless it is linked
// already, atomically across replicas (KV create), and returns the person
// the link points at afterwards: personKey when the claim won.
func (d *Directory) ClaimLink(ctx context.Context, source, sourceID, personKey string) (string, error) {
	if source == "" || sourceID == "" || personKey == "" {
		return "", fmt.Errorf("claim link (%q, %q) -> %q: source, source id and person key are required", source, sourceID, personKey)
	}
	b, err := json.Marshal(link{PersonKey: personKey, LinkedAt: d.now().UTC()})
	if err != nil {
		return "", fmt.Errorf("claim link %s/%s: encode: %w", source, sourceID, err)
	}
	for range 3 {
		_, err = d.links.Create(ctx, linkKey(source, sourceID), b)
		if err == nil {
			return personKey, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", fmt.Errorf("claim link %s/%s: %w", source, sourceID, err)
		}
		owner, rerr := d.Resolve(ctx, source, sourceID)
		if rerr == nil {
			return owner, nil
		}
		if !errors.Is(rerr, state.ErrNotFound) {
			return "", fmt.Errorf("claim link %s/%s: %w", source, sourceID, rerr)
		}
		// Deleted between the create and the read: try again.
	}
	return "", fmt.Errorf("claim link %s/%s: %w", source, sourceID, err)
}

// Resolve implements state.Directory.
func (d *Directory) Resolve(ctx context.Context, source, sourceID string) (string, error) {
	if source == "" || sourceID == "" {
		return "", fmt.Errorf("resolve (%q, %q): %w", source, sourceID, state.ErrNotFound)
	}
	e, err := d.links.Get(ctx, linkKey(source, sourceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("resolve %s/%s: %w", source, sourceID, state.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("resolve %s/%s: %w", source, sourceID, err)
	}
	var l link
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return "", fmt.Errorf("resolve %s/%s: decode: %w", source, sourceID, err)
	}
	return l.PersonKey, nil
}
