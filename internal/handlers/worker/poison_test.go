package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// TestPoisonMessagesGoToDLQAndTheNextLeaverIsRemoved publishes, straight to
// JML_EVENTS (past the receiver's limits, as an older version or another
// client could), messages that can never be processed: a leaver whose person
// id is 10 KB (its KV link key alone would make a protocol line over the
// server's 4096-byte limit, and the server would close the shared connection),
// a source name of 3000 characters, an undecodable body with a 60 KB header (the server takes up to 64 KiB),
// and a body over MaxEventBytes. Each is dead-lettered at once with bounded
// subject and headers, the connection the worker shares is never dropped, and
// the next real leaver is removed.
func TestPoisonMessagesGoToDLQAndTheNextLeaverIsRemoved(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	publish := func(subject string, data []byte, hdr nats.Header) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = data
		for k, v := range hdr {
			m.Header[k] = v
		}
		if _, err := h.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	event := func(source, id, email string) []byte {
		b, err := events.Marshal(events.Event{ID: "poison-" + source[:min(len(source), 8)] + "-" + id[:min(len(id), 8)], Source: source, Type: events.Leaver,
			OccurredAt: time.Now().UTC(), ReceivedAt: time.Now().UTC(), Person: events.Person{ID: id, Email: email, Status: events.Terminated}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	longID := strings.Repeat("E", 10<<10)
	longSource := strings.Repeat("s", 3000)
	publish("jml.events.generic.leaver", event("generic", longID, "bob.martin@acme.test"), nil)
	publish("jml.events."+longSource+".leaver", event(longSource, "E-1", "bob.martin@acme.test"), nil)
	publish("jml.events.generic.leaver", []byte("{not an event"), nats.Header{"Jml-Note": {strings.Repeat("n", 60<<10)}})
	publish("jml.events.generic.leaver", append(append([]byte(`{"pad":"`), strings.Repeat("p", events.MaxEventBytes)...), `"}`...), nil)

	const who = "jane.doe@acme.test"
	h.publish(t, "real-leaver-after-poison", who)
	eventually(t, who+" is removed after the poison", func() bool { _, ok := h.sb.Member(who); return !ok })
	eventually(t, "four dead letters", func() bool { return len(h.dlq(t)) == 4 })

	if st := h.nc.Status(); st != nats.CONNECTED {
		t.Fatalf("the shared connection is %s", st)
	}
	if n := h.nc.Stats().Reconnects; n != 0 {
		t.Fatalf("the shared connection was lost %d times", n)
	}
	if _, ok := h.sb.Member("bob.martin@acme.test"); !ok {
		t.Fatal("a refused event removed its member")
	}
	subjects := map[string]int{}
	for _, d := range h.dlq(t) {
		subjects[d.Subject]++
		for k, v := range d.Header {
			for _, x := range v {
				if len(x) > events.MaxHeaderValueLen {
					t.Errorf("dead letter %s: header %s of %d bytes", d.Subject, k, len(x))
				}
			}
		}
		errText := d.Header.Get(events.HeaderError)
		switch {
		case d.Header.Get(events.HeaderDroppedHeaders) == "1":
			if !strings.Contains(errText, "decode event") || d.Header.Get("Jml-Note") != "" {
				t.Errorf("undecodable: %q, note copied: %v", errText, d.Header.Get("Jml-Note") != "")
			}
		case d.Header.Get(events.HeaderTruncated) != "":
			if !strings.Contains(errText, "exceeds") || len(d.Data) != events.MaxEventBytes {
				t.Errorf("oversized: %q, %d bytes kept", errText, len(d.Data))
			}
		case !strings.Contains(errText, "event refused"):
			t.Errorf("dead letter %s: error %q", d.Subject, errText)
		}
	}
	if subjects["jml.dlq.invalid"] != 1 || subjects["jml.dlq.generic.leaver"] != 3 {
		t.Fatalf("dead-letter subjects %v", subjects)
	}
}

// TestDeadLetterErrorIsBounded: a permanent failure whose error is 100 KB (a
// provider's error body) is dead-lettered with the first 4 KiB of it.
func TestDeadLetterErrorIsBounded(t *testing.T) {
	h := startWrapped(t, func(worker.Converger) worker.Converger { return hugeFailure{} })
	h.publish(t, "msg_huge_error", "jane.doe@acme.test")
	eventually(t, "the event is dead-lettered", func() bool { return len(h.dlq(t)) == 1 })
	got := h.dlq(t)[0].Header.Get(events.HeaderError)
	if len(got) > events.MaxHeaderValueLen || !strings.HasPrefix(got, "permanent: start of the error") || strings.ContainsAny(got, "\r\n") {
		t.Fatalf("Jml-Error of %d bytes: %.80q", len(got), got)
	}
	if h.nc.Stats().Reconnects != 0 {
		t.Fatal("connection lost")
	}
}

// hugeFailure fails every convergence permanently with a 100 KB error that
// holds newlines.
type hugeFailure struct{}

func (hugeFailure) Converge(context.Context, state.PersonRecord, converge.LeaseCheck) (converge.Result, error) {
	return converge.Result{}, fmt.Errorf("permanent: start of the error\r\n%s: %w", strings.Repeat("x", 100<<10), converge.ErrPermanent)
}
