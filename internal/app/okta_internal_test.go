package app

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta/oktatest"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

// TestOktaCatchUpReplaysMissedEvents: a deactivation the hook never delivered is
// found in the System Log and published once; the next run publishes nothing new.
func TestOktaCatchUpReplaysMissedEvents(t *testing.T) {
	ctx := context.Background()
	oktaAPI := oktatest.NewServer(t)
	raw, err := os.ReadFile("../../testdata/webhooks/okta/deactivate.json")
	if err != nil {
		t.Fatal(err)
	}
	var hook struct {
		Data struct {
			Events []map[string]any `json:"events"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &hook); err != nil {
		t.Fatal(err)
	}
	le := hook.Data.Events[0]
	le["published"] = time.Now().UTC().Add(-10 * time.Minute).Format(time.RFC3339Nano)
	b, _ := json.Marshal(le)
	oktaAPI.AddLogEvent(string(b))

	src, err := okta.NewSource(sources.Config{Secrets: []string{"Basic x"}, APIURL: oktaAPI.URL, APIToken: oktaAPI.Token})
	if err != nil {
		t.Fatal(err)
	}
	w, js := testWorker(t, func(o *WorkerOptions) { o.OktaCatchUp = src })
	msgs := func() uint64 {
		st, _ := js.Stream(ctx, events.StreamEvents)
		info, _ := st.Info(ctx)
		return info.State.Msgs
	}
	if err := w.oktaCatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := msgs(); n != 1 {
		t.Fatalf("%d messages after catch-up, want 1", n)
	}
	st, _ := js.Stream(ctx, events.StreamEvents)
	m, err := st.GetLastMsgForSubject(ctx, "jml.events.okta.leaver")
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := events.Unmarshal(m.Data)
	if ev.Person.Email != "john.doe@example.com" || ev.Person.Status != events.Terminated {
		t.Fatalf("replayed event %+v", ev)
	}
	cp, _ := w.gate.Control().Checkpoint(ctx, "okta")
	if cp.IsZero() {
		t.Fatal("no checkpoint stored")
	}
	// Again: the same event is a duplicate.
	if err := w.oktaCatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := msgs(); n != 1 {
		t.Fatalf("%d messages after a second catch-up", n)
	}
}
