package jsstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// AnchorLog is a state.AnchorLog on the stream JML_EVIDENCE_ANCHORS, which
// denies deletes and purges like the evidence stream.
type AnchorLog struct {
	js jetstream.JetStream
	st jetstream.Stream
}

var _ state.AnchorLog = (*AnchorLog)(nil)

// OpenAnchors creates (or opens) the anchor stream.
func OpenAnchors(ctx context.Context, js jetstream.JetStream, o Options) (*AnchorLog, error) {
	o = o.withDefaults()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamAnchors,
		Description: "sentry-jml evidence anchors: signed chain heads",
		Subjects:    []string{AnchorSubject},
		Storage:     o.storage(),
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      o.EvidenceMaxAge,
		Replicas:    o.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", StreamAnchors, err)
	}
	return &AnchorLog{js: js, st: st}, nil
}

// Add implements state.AnchorLog.
func (l *AnchorLog) Add(ctx context.Context, a state.Anchor) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("anchor: encode: %w", err)
	}
	if _, err := l.js.Publish(ctx, AnchorSubject, b, jetstream.WithExpectStream(StreamAnchors)); err != nil {
		return fmt.Errorf("anchor: add: %w", err)
	}
	return nil
}

// Since implements state.AnchorLog.
func (l *AnchorLog) Since(ctx context.Context, from time.Time) iter.Seq2[state.Anchor, error] {
	cfg := jetstream.ConsumerConfig{FilterSubject: AnchorSubject, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !from.IsZero() {
		start := from.Add(-RangeSlack)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	return func(yield func(state.Anchor, error) bool) {
		for m, err := range scan(ctx, l.st, cfg) {
			if err != nil {
				yield(state.Anchor{}, fmt.Errorf("anchors: %w", err))
				return
			}
			var a state.Anchor
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				if !yield(state.Anchor{}, fmt.Errorf("anchors: decode: %w", err)) {
					return
				}
				continue
			}
			if a.At.Before(from) {
				continue
			}
			if !yield(a, nil) {
				return
			}
		}
	}
}

// Last implements state.AnchorLog.
func (l *AnchorLog) Last(ctx context.Context) (state.Anchor, error) {
	m, err := l.st.GetLastMsgForSubject(ctx, AnchorSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return state.Anchor{}, fmt.Errorf("anchors: none yet: %w", state.ErrNotFound)
	}
	if err != nil {
		return state.Anchor{}, fmt.Errorf("anchors: last: %w", err)
	}
	var a state.Anchor
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return state.Anchor{}, fmt.Errorf("anchors: decode: %w", err)
	}
	return a, nil
}
