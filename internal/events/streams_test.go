package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
)

// EnsureStreams creates the streams, leaves them alone when nothing changed,
// and applies a changed setting.
func TestEnsureStreamsCreatesAndUpdates(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Run(t)
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	created := st.CachedInfo().Created
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{MaxAge: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, err = js.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Fatalf("MaxAge = %v after the change, want 2h", got)
	}
	if !st.CachedInfo().Created.Equal(created) {
		t.Fatal("the stream was recreated instead of updated")
	}
	if _, err := js.Stream(ctx, events.StreamDLQ); err != nil {
		t.Fatalf("DLQ stream: %v", err)
	}
}
