package jsstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// RangeSlack is how far a record's At may be from the time JetStream stored
// it for Range to still find it. Append keeps them close when At is left zero.
const RangeSlack = 5 * time.Minute

// maxAppendAttempts bounds the optimistic retries of one Append.
const maxAppendAttempts = 500

// EvidenceLog is a state.EvidenceLog on the stream JML_EVIDENCE. The stream
// denies deletes and purges, and every record's Seq equals its stream
// sequence: Append publishes with an expected last stream sequence, so
// appenders on any number of connections and replicas extend one chain.
type EvidenceLog struct {
	js  jetstream.JetStream
	st  jetstream.Stream
	now func() time.Time

	// appendMu makes this process's appends take turns: concurrent appends
	// from one process would otherwise race for the same sequence, and every
	// loser pays a head read and a retry. Other replicas still contend
	// through the expected last sequence.
	appendMu sync.Mutex
	mu       sync.Mutex
	headSeq  uint64 // last record this log appended or read; a hint, verified by the server
	headHash string
}

var _ state.EvidenceLog = (*EvidenceLog)(nil)

// OpenEvidence creates (or opens) the evidence stream.
func OpenEvidence(ctx context.Context, js jetstream.JetStream, o Options) (*EvidenceLog, error) {
	o = o.withDefaults()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamEvidence,
		Description: "sentry-jml evidence: hash-chained audit records, one subject per person",
		Subjects:    []string{EvidenceSubjectPrefix + ".>"},
		Storage:     o.storage(),
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      o.EvidenceMaxAge,
		Replicas:    o.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", StreamEvidence, err)
	}
	return &EvidenceLog{js: js, st: st, now: o.Now}, nil
}

// EvidenceSubject is the subject of a person's evidence records.
func EvidenceSubject(personKey string) string {
	if personKey == "" {
		return EvidenceSubjectPrefix + ".org"
	}
	sum := sha256.Sum256([]byte(personKey))
	return EvidenceSubjectPrefix + "." + hex.EncodeToString(sum[:16])
}

// Append implements state.EvidenceLog.
func (l *EvidenceLog) Append(ctx context.Context, e state.Evidence) (state.Evidence, error) {
	if e.Kind == "" {
		return state.Evidence{}, errors.New("evidence: kind is required")
	}
	if e.At.IsZero() {
		e.At = l.now()
	}
	e.At = e.At.UTC()
	if e.V == 0 {
		e.V = state.EvidenceV2
	}
	subject := EvidenceSubject(e.PersonKey)
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.Lock()
	seq, prev := l.headSeq, l.headHash
	l.mu.Unlock()
	known := seq > 0
	for attempt := 1; ; attempt++ {
		if !known {
			var err error
			if seq, prev, err = l.head(ctx); err != nil {
				return state.Evidence{}, err
			}
		}
		e.Seq, e.PrevHash, e.Hash = seq+1, prev, ""
		h, err := state.ComputeHash(e)
		if err != nil {
			return state.Evidence{}, err
		}
		e.Hash = h
		data, err := state.EncodeEvidence(e)
		if err != nil {
			return state.Evidence{}, err
		}
		m := nats.NewMsg(subject)
		m.Data = data
		ack, err := l.js.PublishMsg(ctx, m, jetstream.WithExpectStream(StreamEvidence), jetstream.WithExpectLastSequence(seq))
		if err == nil {
			if ack.Sequence != e.Seq {
				return state.Evidence{}, fmt.Errorf("evidence: stored at sequence %d, expected %d", ack.Sequence, e.Seq)
			}
			l.mu.Lock()
			if e.Seq > l.headSeq {
				l.headSeq, l.headHash = e.Seq, e.Hash
			}
			l.mu.Unlock()
			return e, nil
		}
		if !isWrongLastSeq(err) {
			return state.Evidence{}, fmt.Errorf("evidence: append: %w", err)
		}
		if attempt >= maxAppendAttempts {
			return state.Evidence{}, fmt.Errorf("evidence: append: too much contention after %d attempts: %w", attempt, err)
		}
		known = false
		// Another appender won this sequence; back off a little so the
		// contenders spread out, then read the new head.
		if attempt > 1 {
			d := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return state.Evidence{}, ctx.Err()
			case <-t.C:
			}
		}
	}
}

// head reads the stream's last record: its sequence and hash.
func (l *EvidenceLog) head(ctx context.Context) (uint64, string, error) {
	info, err := l.st.Info(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("evidence: head: %w", err)
	}
	last := info.State.LastSeq
	if last == 0 {
		return 0, "", nil
	}
	raw, err := l.st.GetMsg(ctx, last)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// The head aged out (EvidenceMaxAge): the chain restarts unanchored.
		return last, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("evidence: head %d: %w", last, err)
	}
	var prev state.Evidence
	if err := json.Unmarshal(raw.Data, &prev); err != nil {
		return 0, "", fmt.Errorf("evidence: head %d: decode: %w", last, err)
	}
	return last, prev.Hash, nil
}

// ByPerson implements state.EvidenceLog.
func (l *EvidenceLog) ByPerson(ctx context.Context, personKey string) iter.Seq2[state.Evidence, error] {
	cfg := jetstream.ConsumerConfig{FilterSubject: EvidenceSubject(personKey), DeliverPolicy: jetstream.DeliverAllPolicy}
	return l.read(ctx, cfg, func(e state.Evidence, _ time.Time) (keep, more bool) {
		return e.PersonKey == personKey, true
	})
}

// Range implements state.EvidenceLog. It starts reading at from minus
// RangeSlack (by the time JetStream stored the records) and stops past to
// plus RangeSlack.
func (l *EvidenceLog) Range(ctx context.Context, from, to time.Time) iter.Seq2[state.Evidence, error] {
	cfg := jetstream.ConsumerConfig{FilterSubject: EvidenceSubjectPrefix + ".>", DeliverPolicy: jetstream.DeliverAllPolicy}
	if !from.IsZero() {
		start := from.Add(-RangeSlack)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	return l.read(ctx, cfg, func(e state.Evidence, stored time.Time) (keep, more bool) {
		if !to.IsZero() && stored.After(to.Add(RangeSlack)) {
			return false, false
		}
		return !e.At.Before(from) && (to.IsZero() || e.At.Before(to)), true
	})
}

// RawEvidence is a record with the exact bytes stored (and hashed, for
// version 2).
type RawEvidence struct {
	state.Evidence
	Raw []byte
}

// ScanRaw streams every record JetStream stored between from minus
// RangeSlack and to plus RangeSlack (zero: unbounded), oldest first, each
// with its stored bytes and without filtering on At: an export picks its
// contiguous span from them. The bytes are never re-encoded, so fields a
// later version adds survive.
func (l *EvidenceLog) ScanRaw(ctx context.Context, from, to time.Time) iter.Seq2[RawEvidence, error] {
	cfg := jetstream.ConsumerConfig{FilterSubject: EvidenceSubjectPrefix + ".>", DeliverPolicy: jetstream.DeliverAllPolicy}
	if !from.IsZero() {
		start := from.Add(-RangeSlack)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	return l.readRaw(ctx, cfg, func(_ state.Evidence, stored time.Time) (keep, more bool) {
		if !to.IsZero() && stored.After(to.Add(RangeSlack)) {
			return false, false
		}
		return true, true
	})
}

// Head returns the chain's last record (Seq 0 when the log is empty).
func (l *EvidenceLog) Head(ctx context.Context) (seq uint64, hash string, err error) {
	return l.head(ctx)
}

func (l *EvidenceLog) read(ctx context.Context, cfg jetstream.ConsumerConfig, filter func(e state.Evidence, stored time.Time) (keep, more bool)) iter.Seq2[state.Evidence, error] {
	return func(yield func(state.Evidence, error) bool) {
		for r, err := range l.readRaw(ctx, cfg, filter) {
			if !yield(r.Evidence, err) {
				return
			}
		}
	}
}

func (l *EvidenceLog) readRaw(ctx context.Context, cfg jetstream.ConsumerConfig, filter func(e state.Evidence, stored time.Time) (keep, more bool)) iter.Seq2[RawEvidence, error] {
	return func(yield func(RawEvidence, error) bool) {
		for m, err := range scan(ctx, l.st, cfg) {
			if err != nil {
				yield(RawEvidence{}, fmt.Errorf("evidence: %w", err))
				return
			}
			md, err := m.Metadata()
			if err != nil {
				yield(RawEvidence{}, fmt.Errorf("evidence: %w", err))
				return
			}
			var e state.Evidence
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				if !yield(RawEvidence{}, fmt.Errorf("evidence: decode sequence %d: %w", md.Sequence.Stream, err)) {
					return
				}
				continue
			}
			keep, more := filter(e, md.Timestamp)
			if !more {
				return
			}
			if keep && !yield(RawEvidence{Evidence: e, Raw: m.Data()}, nil) {
				return
			}
		}
	}
}
