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
// denies deletes and purges. Each person's records form a chain of their own
// on the person's subject (EvidenceChain names it; org-wide records share
// the chain "org"): Append publishes with the expected last sequence of that
// subject, so appenders on any number of connections and replicas extend
// each chain without gaps, and appends for different people never wait for
// each other. Records written before per-person chains (Chain "") form one
// fleet chain whose Seq is the stream sequence; they stay as they are and
// verify as before. The signed anchors (internal/evidence) sign each chain's
// head, which ties the chains to the fleet's signing key.
type EvidenceLog struct {
	js  jetstream.JetStream
	st  jetstream.Stream
	now func() time.Time

	// stripes serialize this process's appends to one chain (same person):
	// they would otherwise race for the subject's sequence and every loser
	// would pay a head read and a retry. Different people take different
	// stripes most of the time; other replicas contend through the
	// expected last subject sequence.
	stripes [64]sync.Mutex
	mu      sync.Mutex
	// heads caches each chain's head as this log last appended or read it: a
	// hint, verified by the server on the next append.
	heads map[string]chainHead
}

// chainHead is a chain's last record: its stream sequence (for the expected
// last subject sequence), its position in the chain and its hash.
type chainHead struct {
	stream, seq uint64
	hash        string
}

// maxCachedHeads bounds the head cache (the cache is emptied when full; a
// miss costs one read of the subject's last message).
const maxCachedHeads = 100_000

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
	return &EvidenceLog{js: js, st: st, now: o.Now, heads: map[string]chainHead{}}, nil
}

// EvidenceSubject is the subject of a person's evidence records.
func EvidenceSubject(personKey string) string {
	return EvidenceSubjectPrefix + "." + EvidenceChain(personKey)
}

// EvidenceChain names a person's evidence chain: 32 hex digits of the
// SHA-256 of the person key (the key itself, an email or an HR id, stays
// out of the name), or "org" for org-wide records.
func EvidenceChain(personKey string) string {
	if personKey == "" {
		return "org"
	}
	sum := sha256.Sum256([]byte(personKey))
	return hex.EncodeToString(sum[:16])
}

// Append implements state.EvidenceLog. The record extends the person's
// chain (see EvidenceLog).
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
	if e.V < state.EvidenceV2 {
		return state.Evidence{}, errors.New("evidence: version 1 records are no longer written")
	}
	chain := EvidenceChain(e.PersonKey)
	subject := EvidenceSubjectPrefix + "." + chain
	stripe := &l.stripes[fnv32(chain)%uint32(len(l.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	l.mu.Lock()
	head, known := l.heads[chain]
	l.mu.Unlock()
	for attempt := 1; ; attempt++ {
		if !known {
			var err error
			if head, err = l.chainHead(ctx, subject); err != nil {
				return state.Evidence{}, err
			}
		}
		e.Chain, e.Seq, e.PrevHash, e.Hash = chain, head.seq+1, head.hash, ""
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
		ack, err := l.js.PublishMsg(ctx, m, jetstream.WithExpectStream(StreamEvidence), jetstream.WithExpectLastSequencePerSubject(head.stream))
		if err == nil {
			l.mu.Lock()
			if len(l.heads) >= maxCachedHeads {
				clear(l.heads)
			}
			l.heads[chain] = chainHead{stream: ack.Sequence, seq: e.Seq, hash: e.Hash}
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
		// Another appender (another replica) extended this chain; back off
		// a little so the contenders spread out, then read the new head.
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

// chainHead reads the last record on subject. A subject with no record, or
// whose last record is of the fleet chain (written before per-person
// chains), starts a new chain at seq 1.
func (l *EvidenceLog) chainHead(ctx context.Context, subject string) (chainHead, error) {
	raw, err := l.st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return chainHead{}, nil
	}
	if err != nil {
		return chainHead{}, fmt.Errorf("evidence: head of %s: %w", subject, err)
	}
	var prev state.Evidence
	if err := json.Unmarshal(raw.Data, &prev); err != nil {
		return chainHead{}, fmt.Errorf("evidence: head of %s (sequence %d): decode: %w", subject, raw.Sequence, err)
	}
	if prev.Chain == "" {
		return chainHead{stream: raw.Sequence}, nil
	}
	return chainHead{stream: raw.Sequence, seq: prev.Seq, hash: prev.Hash}, nil
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// ChainHead is the last record of one evidence chain.
type ChainHead struct {
	Chain string
	Seq   uint64
	Hash  string
}

// ChainHeads returns the last record of every chain that has a record
// stored at or after since minus RangeSlack (zero: the whole log), in the
// order of those last records.
func (l *EvidenceLog) ChainHeads(ctx context.Context, since time.Time) ([]ChainHead, error) {
	last := map[string]int{}
	var heads []ChainHead
	for r, err := range l.ScanRaw(ctx, since, time.Time{}) {
		if err != nil {
			return nil, err
		}
		h := ChainHead{Chain: r.Chain, Seq: r.Seq, Hash: r.Hash}
		if i, ok := last[r.Chain]; ok {
			heads[i].Seq = 0 // superseded; dropped below
		}
		last[r.Chain] = len(heads)
		heads = append(heads, h)
	}
	out := heads[:0]
	for _, h := range heads {
		if h.Seq != 0 {
			out = append(out, h)
		}
	}
	return out, nil
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
