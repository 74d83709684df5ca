package jsstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketControl holds the fleet-wide operator switches: pause and the brakes on
// event-driven removals.
const BucketControl = "JML_CONTROL"

// BrakeWindow is the sliding window the brakes count removals in.
const BrakeWindow = 60 * time.Second

// ControlState is what `jml status` shows of the switches.
type ControlState struct {
	Paused   bool      `json:"paused"`
	PausedBy string    `json:"paused_by,omitempty"`
	PausedAt time.Time `json:"paused_at,omitzero"`

	BrakesHalted bool      `json:"brakes_halted"`
	HaltedAt     time.Time `json:"halted_at,omitzero"`
	// Approvals are the operators who approved the current halt so far (a
	// two-person rule needs two distinct names before the brakes release).
	Approvals  []Approval `json:"approvals,omitempty"`
	ApprovedBy string     `json:"approved_by,omitempty"`
	ApprovedAt time.Time  `json:"approved_at,omitzero"`
	// Recent are the times of the removals counted in the last BrakeWindow
	// (the sliding window, fleet-wide); Removals is how many there were at
	// the last write.
	Recent   []time.Time `json:"recent,omitempty"`
	Removals int         `json:"removals"`
	// Halts counts every halt since the bucket was created.
	Halts uint64 `json:"halts,omitempty"`
}

// Approval is one operator's approval of halted brakes.
type Approval struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// Control is the JetStream-backed switch board; every replica sees the same state.
type Control struct {
	kv  jetstream.KeyValue
	now func() time.Time
	// max returns brakes.max_event_removals_per_minute (policy is reloadable).
	max func() int
	// approvals returns brakes.approvals: distinct operators needed to release.
	approvals func() int
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
	adm Admission
	err error
}

// Admission is Admit's answer.
type Admission struct {
	Paused  bool // jml pause: nothing may change
	Allowed bool // the removals were counted and may go ahead
	// HaltedNow is set for the one caller whose removal halted the brakes.
	HaltedNow bool
	// Revision is the control record's revision the answer was read from.
	Revision uint64
}

// ControlKey is the key of the switch record in BucketControl (watchers).
const ControlKey = "state"

// OpenControl opens (or creates) the control bucket. maxPerMinute returns the
// brakes' limit per sliding minute and approvals how many distinct operators
// must approve a halt (nil: 30 and 1).
func OpenControl(ctx context.Context, js jetstream.JetStream, o Options, maxPerMinute, approvals func() int) (*Control, error) {
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
	if approvals == nil {
		approvals = func() int { return 1 }
	}
	return &Control{kv: kv, now: now, max: maxPerMinute, approvals: approvals}, nil
}

// KV is the control bucket (for watchers of ControlKey).
func (c *Control) KV() jetstream.KeyValue { return c.kv }

// State reads the switches.
func (c *Control) State(ctx context.Context) (ControlState, error) {
	s, _, err := c.read(ctx)
	return s, err
}

// StateRev reads the switches and the revision they were read at.
func (c *Control) StateRev(ctx context.Context) (ControlState, uint64, error) {
	return c.read(ctx)
}

// DecodeState decodes a control record's value (a watcher's update).
func DecodeState(b []byte) (ControlState, error) {
	var s ControlState
	if err := json.Unmarshal(b, &s); err != nil {
		return ControlState{}, fmt.Errorf("control: decode: %w", err)
	}
	return s, nil
}

func (c *Control) read(ctx context.Context) (ControlState, uint64, error) {
	e, err := c.kv.Get(ctx, ControlKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ControlState{}, 0, nil
	}
	if err != nil {
		return ControlState{}, 0, fmt.Errorf("control: %w", err)
	}
	s, err := DecodeState(e.Value())
	if err != nil {
		return ControlState{}, 0, err
	}
	return s, e.Revision(), nil
}

// update changes the state under compare-and-set; fn returns false to write
// nothing. It returns the state and its revision.
func (c *Control) update(ctx context.Context, fn func(*ControlState) bool) (ControlState, uint64, error) {
	// One update at a time in this process: concurrent removals would
	// otherwise collide on the revision and each loser re-read and retry.
	// Other replicas still contend through compare-and-set.
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	return c.updateLocked(ctx, fn)
}

// updateLocked is update with updateMu held.
func (c *Control) updateLocked(ctx context.Context, fn func(*ControlState) bool) (ControlState, uint64, error) {
	for attempt := 0; attempt < 100; attempt++ {
		s, rev, err := c.read(ctx)
		if err != nil {
			return ControlState{}, 0, err
		}
		if !fn(&s) {
			return s, rev, nil
		}
		b, _ := json.Marshal(s)
		var nrev uint64
		if rev == 0 {
			nrev, err = c.kv.Create(ctx, ControlKey, b)
		} else {
			nrev, err = c.kv.Update(ctx, ControlKey, b, rev)
		}
		if err == nil {
			return s, nrev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return ControlState{}, 0, fmt.Errorf("control: write: %w", err)
		}
	}
	return ControlState{}, 0, errors.New("control: too much contention")
}

// SetPaused pauses or resumes all mutations (ingestion goes on). It returns
// the state and the revision that carries it (replicas acknowledge it).
func (c *Control) SetPaused(ctx context.Context, paused bool, by string) (ControlState, uint64, error) {
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

// prune drops removals older than the window from s.Recent.
func (c *Control) prune(s *ControlState) {
	cut := c.now().Add(-BrakeWindow)
	i := 0
	for i < len(s.Recent) && !s.Recent[i].After(cut) {
		i++
	}
	if i > 0 {
		s.Recent = append([]time.Time(nil), s.Recent[i:]...)
	}
	s.Removals = len(s.Recent)
}

// countRemoval counts one removal in s (brakes not halted): false when the
// sliding window already holds the limit, which halts the brakes.
func (c *Control) countRemoval(s *ControlState) bool {
	c.prune(s)
	if limit := c.max(); limit > 0 && len(s.Recent) >= limit {
		s.BrakesHalted, s.HaltedAt, s.Approvals = true, c.now().UTC(), nil
		s.Halts++
		return false
	}
	s.Recent = append(s.Recent, c.now().UTC())
	s.Removals = len(s.Recent)
	return true
}

// Admit reports the operator pause and, unless paused, counts removals
// against the brakes' sliding window (Allowed is false once they halt).
// Concurrent callers in this process share one read and one compare-and-set
// (a group commit): a burst of leavers costs two JetStream round trips per
// batch, not three per leaver. A request's removals are counted one by one,
// in arrival order; once the brakes halt, the rest are refused (and stay
// halted until ApproveBrakes).
func (c *Control) Admit(ctx context.Context, removals int) (Admission, error) {
	if removals <= 0 {
		s, rev, err := c.read(ctx)
		if err != nil {
			return Admission{}, err
		}
		return Admission{Paused: s.Paused, Allowed: !s.Paused, Revision: rev}, nil
	}
	req := &admitReq{removals: removals, res: make(chan admitRes, 1)}
	c.pendMu.Lock()
	c.pending = append(c.pending, req)
	c.pendMu.Unlock()
	c.updateMu.Lock()
	select {
	case r := <-req.res: // a previous holder committed this request
		c.updateMu.Unlock()
		return r.adm, r.err
	default:
	}
	c.pendMu.Lock()
	batch := c.pending
	c.pending = nil
	c.pendMu.Unlock()
	results := make([]Admission, len(batch))
	_, rev, err := c.updateLocked(ctx, func(s *ControlState) bool {
		clear(results) // a compare-and-set retry starts over
		if s.Paused {
			for i := range results {
				results[i].Paused = true
			}
			return false
		}
		changed := false
		for i, r := range batch {
			results[i].Allowed = true
			for range r.removals {
				if s.BrakesHalted {
					results[i].Allowed = false
					break
				}
				changed = true
				if !c.countRemoval(s) {
					results[i].Allowed, results[i].HaltedNow = false, true
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
		results[i].Revision = rev
		r.res <- admitRes{adm: results[i]}
	}
	c.updateMu.Unlock()
	r := <-req.res
	return r.adm, r.err
}

// ErrNotHalted: an approval of brakes that are not halted (nothing to approve).
var ErrNotHalted = errors.New("the brakes are not halted: nothing to approve")

// ErrSameApprover: the two-person rule needs a second, different operator.
var ErrSameApprover = errors.New("this operator already approved; brakes.approvals needs another operator")

// ApproveBrakes records by's approval of halted brakes; once the policy's
// number of distinct operators (brakes.approvals) have approved, the brakes
// release and the sliding window starts empty. released says whether this
// approval released them.
func (c *Control) ApproveBrakes(ctx context.Context, by string) (st ControlState, released bool, err error) {
	var why error
	st, _, err = c.update(ctx, func(s *ControlState) bool {
		why, released = nil, false
		if !s.BrakesHalted {
			why = ErrNotHalted
			return false
		}
		for _, a := range s.Approvals {
			if a.By == by {
				why = ErrSameApprover
				return false
			}
		}
		now := c.now().UTC()
		s.Approvals = append(s.Approvals, Approval{By: by, At: now})
		if len(s.Approvals) < max(1, c.approvals()) {
			return true
		}
		names := make([]string, len(s.Approvals))
		for i, a := range s.Approvals {
			names[i] = a.By
		}
		s.BrakesHalted, s.Approvals, released = false, nil, true
		s.ApprovedBy, s.ApprovedAt = strings.Join(names, ","), now
		s.Recent, s.Removals = nil, 0
		return true
	})
	if err != nil {
		return st, false, err
	}
	return st, released, why
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
