package receiver_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/receiver"
)

// TestReadyzSaysNothingMore: the public /readyz answers 503 without the reason.
func TestReadyzSaysNothingMore(t *testing.T) {
	_, _, js := natstest.Run(t)
	const reason = "nats: dial tcp 10.1.2.3:4222: internal-topology"
	r, err := receiver.New(receiver.Options{Publisher: events.NewPublisher(js, nil, nil), MaxBody: 4096,
		Ready: func(context.Context) error { return errors.New(reason) }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var v map[string]any
	if rec.Code != http.StatusServiceUnavailable || json.Unmarshal(rec.Body.Bytes(), &v) != nil || len(v) != 1 || v["status"] != "unavailable" {
		t.Fatalf("readyz: %d %s", rec.Code, rec.Body)
	}
}
