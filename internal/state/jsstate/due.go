package jsstate

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// dueMarkerTTL is how long the marker left by a removed due change stays, so
// markers do not pile up in the bucket.
const dueMarkerTTL = time.Hour

// DueQueue is a state.DueQueue on the KV bucket JML_DUE: one key per person
// and field, so scheduling replaces by construction, and every claim or
// removal is a compare-and-set on the key's revision. PopDue scans the
// bucket; it is sized for thousands of scheduled changes, not millions.
type DueQueue struct {
	kv    jetstream.KeyValue
	st    jetstream.Stream
	claim time.Duration
}

var _ state.DueQueue = (*DueQueue)(nil)

// OpenDueQueue creates (or opens) the due bucket.
func OpenDueQueue(ctx context.Context, js jetstream.JetStream, o Options) (*DueQueue, error) {
	o = o.withDefaults()
	kv, st, err := openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:         BucketDue,
		Description:    "sentry-jml future-dated changes, one per person and field",
		History:        1,
		Storage:        o.storage(),
		Replicas:       o.Replicas,
		LimitMarkerTTL: dueMarkerTTL,
	})
	if err != nil {
		return nil, err
	}
	return &DueQueue{kv: kv, st: st, claim: o.DueClaim}, nil
}

func dueKey(personKey, field string) string { return kvKey(personKey) + "." + kvKey(field) }

func (q *DueQueue) get(ctx context.Context, key string) (state.Due, bool, error) {
	e, err := q.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return state.Due{}, false, nil
	}
	if err != nil {
		return state.Due{}, false, err
	}
	var d state.Due
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return state.Due{}, false, fmt.Errorf("decode: %w", err)
	}
	d.Revision = e.Revision()
	return d, true, nil
}

// Schedule implements state.DueQueue.
func (q *DueQueue) Schedule(ctx context.Context, d state.Due) (bool, error) {
	if d.PersonKey == "" || d.Field == "" || d.ID == "" {
		return false, fmt.Errorf("schedule %q/%q: id, person key and field are required", d.PersonKey, d.Field)
	}
	key := dueKey(d.PersonKey, d.Field)
	d.EffectiveAt = d.EffectiveAt.UTC()
	d.ClaimedUntil, d.Revision = time.Time{}, 0
	b, err := json.Marshal(d)
	if err != nil {
		return false, fmt.Errorf("schedule %s/%s: encode: %w", d.PersonKey, d.Field, err)
	}
	for attempt := 1; ; attempt++ {
		old, exists, err := q.get(ctx, key)
		if err != nil {
			return false, fmt.Errorf("schedule %s/%s: %w", d.PersonKey, d.Field, err)
		}
		if exists {
			if d.Version.Older(old.Version, false, false) {
				return false, nil
			}
			if old.ID == d.ID && old.Version == d.Version {
				return true, nil // a redelivery: keep a claim in progress
			}
			_, err = q.kv.Update(ctx, key, b, old.Revision)
		} else {
			_, err = q.kv.Create(ctx, key, b)
		}
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return false, fmt.Errorf("schedule %s/%s: %w", d.PersonKey, d.Field, err)
		}
		if attempt >= 50 {
			return false, fmt.Errorf("schedule %s/%s: too much contention: %w", d.PersonKey, d.Field, err)
		}
	}
}

// Cancel implements state.DueQueue.
func (q *DueQueue) Cancel(ctx context.Context, personKey, field string) error {
	if personKey == "" {
		return errors.New("cancel: person key is required")
	}
	if field != "" {
		// Most status events replace nothing: a read, and no purge (a
		// stream write and a marker) unless a change is scheduled.
		key := dueKey(personKey, field)
		_, exists, err := q.get(ctx, key)
		if err != nil {
			return fmt.Errorf("cancel %s/%s: %w", personKey, field, err)
		}
		if !exists {
			return nil
		}
		return q.remove(ctx, key, 0)
	}
	keys, err := liveKeys(ctx, q.st, BucketDue, kvKey(personKey)+".*")
	if err != nil {
		return fmt.Errorf("cancel %s: %w", personKey, err)
	}
	for _, k := range keys {
		if err := q.remove(ctx, k, 0); err != nil {
			return fmt.Errorf("cancel %s: %w", personKey, err)
		}
	}
	return nil
}

// remove purges key (at revision rev when rev > 0) leaving a short-lived
// marker. A revision mismatch is not an error: the change was replaced.
func (q *DueQueue) remove(ctx context.Context, key string, rev uint64) error {
	opts := []jetstream.KVDeleteOpt{jetstream.PurgeTTL(dueMarkerTTL)}
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := q.kv.Purge(ctx, key, opts...)
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("remove due %s: %w", key, err)
	}
	return nil
}

// scanAll streams every stored change with its revision.
func (q *DueQueue) scanAll(ctx context.Context) iter.Seq2[state.Due, error] {
	return func(yield func(state.Due, error) bool) {
		cfg := jetstream.ConsumerConfig{
			FilterSubject: "$KV." + BucketDue + ".>",
			DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		}
		for m, err := range scan(ctx, q.st, cfg) {
			if err != nil {
				yield(state.Due{}, fmt.Errorf("due: %w", err))
				return
			}
			if isKVDelete(m) {
				continue
			}
			md, err := m.Metadata()
			if err != nil {
				yield(state.Due{}, fmt.Errorf("due: %w", err))
				return
			}
			var d state.Due
			if err := json.Unmarshal(m.Data(), &d); err != nil {
				if !yield(state.Due{}, fmt.Errorf("due: decode %s: %w", m.Subject(), err)) {
					return
				}
				continue
			}
			d.Revision = md.Sequence.Stream
			if !yield(d, nil) {
				return
			}
		}
	}
}

// PopDue implements state.DueQueue: it scans for unclaimed changes due at
// now, then claims the earliest by compare-and-set on their revisions; a
// change another popper claimed (or an event replaced) in between is skipped.
func (q *DueQueue) PopDue(ctx context.Context, now time.Time, max int) ([]state.Due, error) {
	if max <= 0 {
		return nil, nil
	}
	// Keep more candidates than max: concurrent poppers race for the earliest.
	keep := max * 4
	var cands []state.Due
	for d, err := range q.scanAll(ctx) {
		if err != nil {
			return nil, err
		}
		if d.EffectiveAt.After(now) || d.ClaimedUntil.After(now) {
			continue
		}
		cands = append(cands, d)
		if len(cands) >= 2*keep {
			sortDue(cands)
			cands = cands[:keep]
		}
	}
	sortDue(cands)
	var out []state.Due
	for _, d := range cands {
		if len(out) == max {
			break
		}
		rev := d.Revision
		d.ClaimedUntil = now.Add(q.claim).UTC()
		d.Revision = 0
		b, err := json.Marshal(d)
		if err != nil {
			return out, fmt.Errorf("pop due %s/%s: encode: %w", d.PersonKey, d.Field, err)
		}
		nrev, err := q.kv.Update(ctx, dueKey(d.PersonKey, d.Field), b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("pop due %s/%s: %w", d.PersonKey, d.Field, err)
		}
		d.Revision = nrev
		out = append(out, d)
	}
	return out, nil
}

func sortDue(ds []state.Due) {
	slices.SortFunc(ds, func(a, b state.Due) int {
		if c := a.EffectiveAt.Compare(b.EffectiveAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Revision, b.Revision)
	})
}

// Done implements state.DueQueue.
func (q *DueQueue) Done(ctx context.Context, d state.Due) error {
	if d.Revision == 0 {
		return fmt.Errorf("done %s/%s: not a popped change (no revision)", d.PersonKey, d.Field)
	}
	return q.remove(ctx, dueKey(d.PersonKey, d.Field), d.Revision)
}

// List implements state.DueQueue.
func (q *DueQueue) List(ctx context.Context) iter.Seq2[state.Due, error] { return q.scanAll(ctx) }

// Len implements state.DueQueue, reading headers only.
func (q *DueQueue) Len(ctx context.Context) (int, error) {
	cfg := jetstream.ConsumerConfig{
		FilterSubject: "$KV." + BucketDue + ".>",
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		HeadersOnly:   true,
	}
	n := 0
	for m, err := range scan(ctx, q.st, cfg) {
		if err != nil {
			return 0, fmt.Errorf("due len: %w", err)
		}
		if !isKVDelete(m) {
			n++
		}
	}
	return n, nil
}
