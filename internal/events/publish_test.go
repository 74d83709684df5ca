package events_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
)

// TestAsyncPublisherAcksDedupesAndFails: the async publisher returns only
// once the message is in JML_EVENTS (its sequence), reports a repeated
// Nats-Msg-Id as a duplicate (JetStream's dedupe window), keeps each
// concurrent caller's ack apart, and fails instead of waiting when no stream
// stores the subject.
func TestAsyncPublisherAcksDedupesAndFails(t *testing.T) {
	ctx := context.Background()
	_, nc, js := natstest.Run(t)
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	ajs, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p := events.NewAsyncPublisher(ajs, nil, nil, 5*time.Second)
	ev := events.Event{ID: "a-1", Source: "generic", Type: events.Leaver, Person: events.Person{ID: "E-1"}, OccurredAt: time.Now().UTC(), ReceivedAt: time.Now().UTC()}
	r1, err := p.Publish(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Duplicate || r1.Sequence == 0 {
		t.Fatalf("first publish: %+v", r1)
	}
	st, err := js.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.GetMsg(ctx, r1.Sequence); err != nil || m.Header.Get(jetstream.MsgIDHeader) != "generic:a-1" {
		t.Fatalf("stored message at %d: %v %v", r1.Sequence, m, err)
	}
	r2, err := p.Publish(ctx, ev)
	if err != nil || !r2.Duplicate || r2.Sequence != r1.Sequence {
		t.Fatalf("repeat: %+v %v; want the duplicate of %d", r2, err, r1.Sequence)
	}

	// Concurrent callers each get their own message's ack.
	var wg sync.WaitGroup
	seqs := make([]uint64, 32)
	errs := make([]error, 32)
	for i := range seqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := ev
			e.ID = "c-" + string(rune('A'+i))
			res, err := p.Publish(ctx, e)
			seqs[i], errs[i] = res.Sequence, err
			if err == nil {
				m, gerr := st.GetMsg(ctx, res.Sequence)
				if gerr != nil || m.Header.Get(jetstream.MsgIDHeader) != "generic:"+e.ID {
					errs[i] = errors.New("ack sequence holds another message")
				}
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i, s := range seqs {
		if errs[i] != nil || seen[s] {
			t.Fatalf("caller %d: seq %d err %v", i, s, errs[i])
		}
		seen[s] = true
	}

	// No stream for the subject: an error, well before the wait bound.
	if err := js.DeleteStream(ctx, events.StreamEvents); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := p.Publish(ctx, events.Event{ID: "a-2", Source: "generic", Type: events.Leaver, Person: events.Person{ID: "E-2"}}); err == nil {
		t.Fatal("publish without a stream succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("publish without a stream took %s", d)
	}
}
