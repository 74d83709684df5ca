package jsstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketReplicas holds one heartbeat per live replica that can change Sentry
// (workers and the all-in-one process): who they are and which revision of
// the control record (pause, brakes) they have seen and enforce.
const BucketReplicas = "JML_REPLICAS"

// presenceTTL is how long a heartbeat stays in the bucket without renewal.
const presenceTTL = 30 * time.Second

// Beat is one replica's heartbeat.
type Beat struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	// SeenControl is the revision of the control record this replica has
	// applied: once it is at or past a pause's revision, the replica sends no
	// mutation (and the ones it had in flight have finished).
	SeenControl uint64    `json:"seen_control"`
	Paused      bool      `json:"paused"`
	At          time.Time `json:"at"`
	Started     time.Time `json:"started"`
}

// Presence is the replica registry.
type Presence struct {
	kv jetstream.KeyValue
	st jetstream.Stream
}

// OpenPresence opens (or creates) the replica registry.
func OpenPresence(ctx context.Context, js jetstream.JetStream, o Options) (*Presence, error) {
	o = o.withDefaults()
	kv, st, err := openKV(ctx, js, jetstream.KeyValueConfig{Bucket: BucketReplicas, Description: "sentry-jml live replicas",
		History: 1, TTL: presenceTTL, Storage: jetstream.MemoryStorage, Replicas: o.Replicas})
	if err != nil {
		return nil, err
	}
	return &Presence{kv: kv, st: st}, nil
}

func presenceKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "r." + hex.EncodeToString(sum[:10])
}

// Beat writes b as its replica's heartbeat.
func (p *Presence) Beat(ctx context.Context, b Beat) error {
	v, _ := json.Marshal(b)
	if _, err := p.kv.Put(ctx, presenceKey(b.ID), v); err != nil {
		return fmt.Errorf("replica heartbeat: %w", err)
	}
	return nil
}

// Leave removes a replica's heartbeat (a clean shutdown).
func (p *Presence) Leave(ctx context.Context, id string) error {
	if err := p.kv.Delete(ctx, presenceKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("replica leave: %w", err)
	}
	return nil
}

// Live lists the replicas whose last heartbeat is younger than within. It
// reads every key through a key scan, not nats.go's KV watcher: replicas beat
// while jml pause lists them, and the watcher's initial-values marker can
// come before a key whose old heartbeat a new one replaced, so a pause would
// answer complete without the replica it never saw.
func (p *Presence) Live(ctx context.Context, now time.Time, within time.Duration) ([]Beat, error) {
	cfg := jetstream.ConsumerConfig{FilterSubject: "$KV." + BucketReplicas + ".>", DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}
	out := []Beat{}
	for m, err := range scan(ctx, p.st, cfg) {
		if err != nil {
			return nil, fmt.Errorf("replica list: %w", err)
		}
		if isKVDelete(m) {
			continue
		}
		var b Beat
		if json.Unmarshal(m.Data(), &b) != nil {
			continue
		}
		if now.Sub(b.At) <= within {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b Beat) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
