package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// evidenceLost converges for real, then reports that its evidence record
// could not be written (what converge returns once its retries are spent).
type evidenceLost struct{ inner worker.Converger }

func (e evidenceLost) Converge(ctx context.Context, rec state.PersonRecord, check converge.LeaseCheck) (converge.Result, error) {
	res, err := e.inner.Converge(ctx, rec, check)
	if err != nil {
		return res, err
	}
	steps, jerr := json.Marshal(res.Steps)
	if jerr != nil {
		return res, jerr
	}
	return res, &converge.EvidenceError{Record: state.Evidence{PersonKey: rec.Key, Email: rec.Person.Email, Kind: "convergence",
		Outcome: string(res.Outcome), Steps: steps}, Err: errors.New("jetstream: no responders")}
}

// An event whose evidence record could not be written is not acknowledged as
// done: it goes to the DLQ at once, with the record in its error header.
func TestEvidenceLostDeadLettersWithTheRecord(t *testing.T) {
	h := startWrapped(t, func(inner worker.Converger) worker.Converger { return evidenceLost{inner} })
	h.publish(t, "ev-lost", "jane.doe@acme.test")
	eventually(t, "the event is dead-lettered", func() bool { return len(h.dlq(t)) == 1 })
	m := h.dlq(t)[0]
	msg := m.Header.Get(events.HeaderError)
	if !strings.Contains(msg, "evidence record not written") || !strings.Contains(msg, `"remove_member"`) {
		t.Fatalf("dead letter error header: %q", msg)
	}
	if _, ok := h.sb.Member("jane.doe@acme.test"); ok {
		t.Fatal("the removal itself did not happen")
	}
}
