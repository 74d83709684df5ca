package jsstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// BucketFollow holds the audit-log follower's cursor (key FollowCursorKey):
// where in Sentry's organization audit log the follower has read up to.
const BucketFollow = "JML_FOLLOW"

// FollowCursorKey is the cursor's key in BucketFollow.
const FollowCursorKey = "audit-cursor"

// ErrCursorMoved: the follower's cursor was saved by someone else since it
// was loaded (another replica's poll won the race).
var ErrCursorMoved = errors.New("audit-log cursor moved by another replica")

// FollowCursor is the audit-log follower's durable cursor, written with
// compare-and-set so that two replicas can never both advance it from the
// same position.
type FollowCursor struct{ kv jetstream.KeyValue }

// OpenFollowCursor opens (or creates) BucketFollow.
func OpenFollowCursor(ctx context.Context, js jetstream.JetStream, o Options) (*FollowCursor, error) {
	o = o.withDefaults()
	kv, _, err := openKV(ctx, js, jetstream.KeyValueConfig{Bucket: BucketFollow, Description: "sentry-jml audit-log follower cursor",
		History: 5, Storage: o.storage(), Replicas: o.Replicas})
	if err != nil {
		return nil, err
	}
	return &FollowCursor{kv: kv}, nil
}

// Load decodes the cursor into v and returns its revision; an error wrapping
// state.ErrNotFound when none was saved yet.
func (f *FollowCursor) Load(ctx context.Context, v any) (uint64, error) {
	e, err := f.kv.Get(ctx, FollowCursorKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, fmt.Errorf("audit-log cursor: %w", state.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("audit-log cursor: %w", err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("audit-log cursor: decode: %w", err)
	}
	return e.Revision(), nil
}

// Save writes v if the stored revision is still rev (0: only if none exists)
// and returns the new revision. A lost race is an error wrapping
// ErrCursorMoved.
func (f *FollowCursor) Save(ctx context.Context, v any, rev uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("audit-log cursor: encode: %w", err)
	}
	var n uint64
	if rev == 0 {
		n, err = f.kv.Create(ctx, FollowCursorKey, b)
	} else {
		n, err = f.kv.Update(ctx, FollowCursorKey, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSeq(err) {
		return 0, ErrCursorMoved
	}
	if err != nil {
		return 0, fmt.Errorf("audit-log cursor: save: %w", err)
	}
	return n, nil
}
