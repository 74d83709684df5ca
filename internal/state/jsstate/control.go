package jsstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketControl holds the fleet-wide operator switches: pause and the brakes on
// event-driven removals.
const BucketControl = "JML_CONTROL"

// ControlState is what `jml status` shows of the switches.
type ControlState struct {
	Paused   bool      `json:"paused"`
	PausedBy string    `json:"paused_by,omitempty"`
	PausedAt time.Time `json:"paused_at,omitzero"`

	BrakesHalted bool      `json:"brakes_halted"`
	HaltedAt     time.Time `json:"halted_at,omitzero"`
	ApprovedBy   string    `json:"approved_by,omitempty"`
	ApprovedAt   time.Time `json:"approved_at,omitzero"`
	// Window is the minute being counted and Removals the removals in it.
	Window   time.Time `json:"window,omitzero"`
	Removals int       `json:"removals"`
}

// Control is the JetStream-backed switch board; every replica sees the same state.
type Control struct {
	kv  jetstream.KeyValue
	now func() time.Time
	// max returns brakes.max_event_removals_per_minute (policy is reloadable).
	max func() int
	// updateMu serialises this process's compare-and-set updates (update).
	updateMu sync.Mutex
	// pending are Admit requests waiting for the next group commit.
	pendMu  sync.Mutex
	pending []*admitReq
}

// admitReq is one caller's part of a group commit.
type admitReq struct {
	removals int
	res      chan admitRes
}

type admitRes struct {
	paused, allowed bool
	err             error
}

const controlKey = "state"

// OpenControl opens (or creates) the control bucket.
func OpenControl(ctx context.Context, js jetstream.JetStream, o Options, maxPerMinute func() int) (*Control, error) {
	o = o.withDefaults()
	kv, _, err := openKV(ctx, js, jetstream.KeyValueConfig{Bucket: BucketControl, Description: "sentry-jml pause and brakes",
		History: 10, Storage: o.storage(), Replicas: o.Replicas})
	if err != nil {
		return nil, err
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if maxPerMinute == nil {
		maxPerMinute = func() int { return 30 }
	}
	return &Control{kv: kv, now: now, max: maxPerMinute}, nil
}

// State reads the switches.
func (c *Control) State(ctx context.Context) (ControlState, error) {
	s, _, err := c.read(ctx)
	return s, err
}

func (c *Control) read(ctx context.Context) (ControlState, uint64, error) {
	e, err := c.kv.Get(ctx, controlKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ControlState{}, 0, nil
	}
	if err != nil {
		return ControlState{}, 0, fmt.Errorf("control: %w", err)
	}
	var s ControlState
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return ControlState{}, 0, fmt.Errorf("control: decode: %w", err)
	}
	return s, e.Revision(), nil
}

// update changes the state under compare-and-set; fn returns false to write nothing.
func (c *Control) update(ctx context.Context, fn func(*ControlState) bool) (ControlState, error) {
	// One update at a time in this process: concurrent removals would
	// otherwise collide on the revision and each loser re-read and retry.
	// Other replicas still contend through compare-and-set.
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	return c.updateLocked(ctx, fn)
}

// updateLocked is update with updateMu held.
func (c *Control) updateLocked(ctx context.Context, fn func(*ControlState) bool) (ControlState, error) {
	for attempt := 0; attempt < 100; attempt++ {
		s, rev, err := c.read(ctx)
		if err != nil {
			return ControlState{}, err
		}
		if !fn(&s) {
			return s, nil
		}
		b, _ := json.Marshal(s)
		if rev == 0 {
			_, err = c.kv.Create(ctx, controlKey, b)
		} else {
			_, err = c.kv.Update(ctx, controlKey, b, rev)
		}
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return ControlState{}, fmt.Errorf("control: write: %w", err)
		}
	}
	return ControlState{}, errors.New("control: too much contention")
}

// SetPaused pauses or resumes all mutations (ingestion goes on).
func (c *Control) SetPaused(ctx context.Context, paused bool, by string) (ControlState, error) {
	return c.update(ctx, func(s *ControlState) bool {
		if s.Paused == paused {
			return false
		}
		s.Paused, s.PausedBy, s.PausedAt = paused, by, c.now().UTC()
		if !paused {
			s.PausedAt = time.Time{}
		}
		return true
	})
}

// countRemoval counts one removal in s (brakes not halted): false when it
// exceeds the minute's limit, which halts the brakes.
func (c *Control) countRemoval(s *ControlState) bool {
	minute := c.now().UTC().Truncate(time.Minute)
	if !s.Window.Equal(minute) {
		s.Window, s.Removals = minute, 0
	}
	if limit := c.max(); limit > 0 && s.Removals >= limit {
		s.BrakesHalted, s.HaltedAt = true, c.now().UTC()
		return false
	}
	s.Removals++
	return true
}

// Admit implements converge.Gate: it reports the operator pause
// and, unless paused, counts removals event-driven removals against the
// brakes (allowed is false once they halt). Concurrent callers in this
// process share one read and one compare-and-set (a group commit): a burst
// of leavers costs two JetStream round trips per batch, not three per
// leaver. A request's removals are counted one by one, in arrival order;
// once the brakes halt, the rest are refused (and stay halted until
// ApproveBrakes).
func (c *Control) Admit(ctx context.Context, removals int) (paused, allowed bool, err error) {
	if removals <= 0 {
		s, _, err := c.read(ctx)
		return s.Paused, err == nil && !s.Paused, err
	}
	req := &admitReq{removals: removals, res: make(chan admitRes, 1)}
	c.pendMu.Lock()
	c.pending = append(c.pending, req)
	c.pendMu.Unlock()
	c.updateMu.Lock()
	select {
	case r := <-req.res: // a previous holder committed this request
		c.updateMu.Unlock()
		return r.paused, r.allowed, r.err
	default:
	}
	c.pendMu.Lock()
	batch := c.pending
	c.pending = nil
	c.pendMu.Unlock()
	results := make([]admitRes, len(batch))
	_, err = c.updateLocked(ctx, func(s *ControlState) bool {
		clear(results) // a compare-and-set retry starts over
		if s.Paused {
			for i := range results {
				results[i].paused = true
			}
			return false
		}
		changed := false
		for i, r := range batch {
			results[i].allowed = true
			for range r.removals {
				if s.BrakesHalted {
					results[i].allowed = false
					break
				}
				changed = true
				if !c.countRemoval(s) {
					results[i].allowed = false
					break
				}
			}
		}
		return changed
	})
	for i, r := range batch {
		if err != nil {
			r.res <- admitRes{err: err}
			continue
		}
		r.res <- results[i]
	}
	c.updateMu.Unlock()
	r := <-req.res
	return r.paused, r.allowed, r.err
}

// ApproveBrakes releases halted brakes and starts a fresh count.
func (c *Control) ApproveBrakes(ctx context.Context, by string) (ControlState, error) {
	return c.update(ctx, func(s *ControlState) bool {
		s.BrakesHalted = false
		s.ApprovedBy, s.ApprovedAt = by, c.now().UTC()
		s.Window, s.Removals = c.now().UTC().Truncate(time.Minute), 0
		return true
	})
}

// Checkpoint returns the time stored under name ("" → zero time).
func (c *Control) Checkpoint(ctx context.Context, name string) (time.Time, error) {
	e, err := c.kv.Get(ctx, "checkpoint."+name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	var t time.Time
	if err := t.UnmarshalText(e.Value()); err != nil {
		return time.Time{}, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return t, nil
}

// SetCheckpoint stores t under name.
func (c *Control) SetCheckpoint(ctx context.Context, name string, t time.Time) error {
	b, _ := t.UTC().MarshalText()
	if _, err := c.kv.Put(ctx, "checkpoint."+name, b); err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return nil
}
