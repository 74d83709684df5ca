package receiver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/generic"
	"github.com/sentry-jml/sentry-jml/internal/handlers/receiver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func newReceiver(t *testing.T, js jetstream.JetStream) *httptest.Server {
	t.Helper()
	g, err := generic.NewSource([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := receiver.New(receiver.Options{Publisher: events.NewPublisher(js, nil, nil), Sources: []sources.Source{g}, MaxBody: 4096})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func signedPost(t *testing.T, url, id string, body []byte) (int, map[string]any) {
	t.Helper()
	key, _ := signature.DecodeStandardSecret(secret)
	now := time.Now()
	req, _ := http.NewRequest(http.MethodPost, url+"/hooks/generic", bytes.NewReader(body))
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", signature.Sign(key, id, now, body))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

const body = `{"type":"leaver","occurred_at":"2026-11-28T10:00:00Z","person":{"id":"E-1","email":"jane@acme.com"}}`

func TestPublishesWithMsgIDAndTraceHeaders(t *testing.T) {
	_, _, js := natstest.Run(t)
	srv := newReceiver(t, js)
	code, m := signedPost(t, srv.URL, "msg_1", []byte(body))
	if code != http.StatusAccepted || m["accepted"] != float64(1) {
		t.Fatalf("%d %v", code, m)
	}
	st, _ := js.Stream(context.Background(), events.StreamEvents)
	raw, err := st.GetLastMsgForSubject(context.Background(), "jml.events.generic.leaver")
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get(events.HeaderMsgID); got != "generic:msg_1" {
		t.Fatalf("Nats-Msg-Id = %q", got)
	}
	ev, err := events.Unmarshal(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "msg_1" || ev.Source != "generic" || ev.Person.Status != events.Terminated || ev.ReceivedAt.IsZero() {
		t.Fatalf("stored event %+v", ev)
	}
}

// TestNATSDownIs503 stops the embedded server: the receiver must answer 503 (the
// sender retries) and, once NATS is back, accept the same event.
func TestNATSDownIs503(t *testing.T) {
	ns, nc, js := natstest.Run(t)
	srv := newReceiver(t, js)
	ns.NATS().Shutdown()
	ns.NATS().WaitForShutdown()
	start := time.Now()
	code, m := signedPost(t, srv.URL, "msg_down", []byte(body))
	if code != http.StatusServiceUnavailable || !strings.Contains(m["error"].(string), "retry") {
		t.Fatalf("with NATS down: %d %v", code, m)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("503 took %v", time.Since(start))
	}
	_ = nc
}

func TestBodyLimitAndSignatureBeforeParse(t *testing.T) {
	_, _, js := natstest.Run(t)
	srv := newReceiver(t, js)
	code, _ := signedPost(t, srv.URL, "msg_big", bytes.Repeat([]byte(" "), 4097))
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized: %d", code)
	}
	// Garbage with no signature is 401, not 400: nothing about the body leaks.
	resp, err := http.Post(srv.URL+"/hooks/generic", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned garbage: %d", resp.StatusCode)
	}
	code, m := signedPost(t, srv.URL, "msg_garbage", []byte("{not json"))
	if code != http.StatusBadRequest || !strings.Contains(m["error"].(string), "malformed JSON") {
		t.Fatalf("signed garbage: %d %v", code, m)
	}
	st, _ := js.Stream(context.Background(), events.StreamEvents)
	info, _ := st.Info(context.Background())
	if info.State.Msgs != 0 {
		t.Fatalf("%d messages published from refused requests", info.State.Msgs)
	}
}
