package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/signature"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

func testRedisURL() string {
	if u := os.Getenv("JML_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

// mustRunMain starts the all-in-one on random loopback ports in a temp dir.
func mustRunMain(t *testing.T, redisURL string) *system {
	t.Helper()
	return mustRunMainWith(t, redisURL, nil)
}

func mustRunMainWith(t *testing.T, redisURL string, tel *telemetry.Telemetry) *system {
	t.Helper()
	return mustRunMainCfg(t, redisURL, tel, "")
}

func mustRunMainCfg(t *testing.T, redisURL string, tel *telemetry.Telemetry, policyYAML string) *system {
	t.Helper()
	cfg := config.Common{
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", SandboxToken: "sandbox",
		DataDir: t.TempDir(), LogLevel: "debug", MaxBodyBytes: 1 << 20, StreamReplicas: 1, RedisURL: redisURL,
		RedisPrefix: "jmltest:" + randomID() + ":",
	}
	if policyYAML != "" {
		cfg.PolicyFile = filepath.Join(cfg.DataDir, "policy.yaml")
		if err := os.WriteFile(cfg.PolicyFile, []byte(policyYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	sys, err := startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: logs, telemetry: tel})
	if err != nil {
		t.Fatalf("startAll: %v", err)
	}
	t.Cleanup(func() {
		sys.Close()
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs.String())
		}
	})
	return sys
}

type signedClient struct {
	t      *testing.T
	url    string
	key    []byte
	client *http.Client
}

func newSignedClient(t *testing.T, sys *system) *signedClient {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sys.cfg.DataDir, genericSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(sys.cfg.DataDir, genericSecretFile))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, want 0600", fi.Mode().Perm())
	}
	key, err := signature.DecodeStandardSecret(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return &signedClient{t: t, url: "http://" + sys.httpAddr + "/hooks/generic", key: key, client: &http.Client{Timeout: 10 * time.Second}}
}

type reply struct {
	status int
	body   map[string]any
}

func (c *signedClient) post(id string, body []byte, hdr map[string]string) reply {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return reply{resp.StatusCode, m}
}

func (c *signedClient) send(id string, body []byte) reply {
	now := time.Now()
	return c.post(id, body, map[string]string{
		"webhook-id": id, "webhook-timestamp": strconv.FormatInt(now.Unix(), 10),
		"webhook-signature": signature.Sign(c.key, id, time.Unix(now.Unix(), 0), body),
	})
}

func leaverBody(email string) []byte {
	return []byte(fmt.Sprintf(`{"type":"leaver","occurred_at":%q,"person":{"id":"E-%s","email":%q,"status":"terminated"}}`,
		time.Now().UTC().Format(time.RFC3339), strings.Split(email, "@")[0], email))
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// callsAbout counts logged requests from index from on that concern one member
// (by id in the path or email in the query), optionally of one method.
func callsAbout(log []sentrytest.LoggedRequest, from int, method, memberID, email string) int {
	n := 0
	for _, r := range log[min(from, len(log)):] {
		if method != "" && r.Method != method {
			continue
		}
		if strings.Contains(r.Path, "/"+memberID+"/") || strings.Contains(strings.ToLower(r.Path), strings.ToLower(url.QueryEscape(email))) ||
			strings.Contains(strings.ToLower(r.Path), strings.ToLower(email)) {
			n++
		}
	}
	return n
}

func streamMsgs(t *testing.T, sys *system) uint64 {
	t.Helper()
	js, err := jetstream.New(sys.nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestEndToEndLeaver(t *testing.T) {
	for _, backend := range []string{"redis", "embedded"} {
		t.Run(backend, func(t *testing.T) {
			redisURL := ""
			if backend == "redis" {
				redisURL = testRedisURL()
			}
			sys := mustRunMain(t, redisURL)
			sb := sys.sandbox
			c := newSignedClient(t, sys)
			const jane = "jane.doe@acme.test"
			janeM, ok := sb.Member(jane)
			if !ok {
				t.Fatalf("demo seed lacks %s", jane)
			}
			before := len(sb.Members())

			// A signed leaver is accepted after the JetStream ack and removes the member.
			r := c.send("msg_e2e_leaver_1", leaverBody(jane))
			if r.status != http.StatusAccepted || r.body["accepted"] != float64(1) || r.body["duplicates"] != float64(0) {
				t.Fatalf("leaver: %d %v", r.status, r.body)
			}
			eventually(t, jane+" is gone from the sandbox", func() bool { _, ok := sb.Member(jane); return !ok })
			if n := len(sb.Members()); n != before-1 {
				t.Fatalf("members %d → %d: exactly one should have been removed", before, n)
			}
			st := sb.Stats()
			if got := st.Mutations["member.remove"][jane]; got != 1 {
				t.Fatalf("member.remove for %s = %d, want 1 (mutations %v)", jane, got, st.Mutations)
			}
			if got := callsAbout(sb.RequestLog(), 0, http.MethodDelete, janeM.ID, jane); got != 1 {
				t.Fatalf("REST DELETEs of jane's member = %d, want 1", got)
			}
			if streamMsgs(t, sys) != 1 {
				t.Fatalf("stream holds %d messages, want 1", streamMsgs(t, sys))
			}

			// The same webhook-id again (a sender retry, freshly signed) is a duplicate:
			// nothing new is stored, so no Sentry call follows.
			logMark := len(sb.RequestLog())
			r = c.send("msg_e2e_leaver_1", leaverBody(jane))
			if r.status != http.StatusAccepted || r.body["accepted"] != float64(0) || r.body["duplicates"] != float64(1) {
				t.Fatalf("duplicate: %d %v", r.status, r.body)
			}
			if n := streamMsgs(t, sys); n != 1 {
				t.Fatalf("duplicate was stored: %d messages", n)
			}

			// An unsigned event and a wrongly signed one are refused; nothing is published.
			r = c.post("msg_unsigned", leaverBody("john.smith@acme.test"), map[string]string{"webhook-id": "msg_unsigned", "webhook-timestamp": strconv.FormatInt(time.Now().Unix(), 10)})
			if r.status != http.StatusUnauthorized {
				t.Fatalf("unsigned: %d %v", r.status, r.body)
			}
			forged := leaverBody("john.smith@acme.test")
			other, _ := signature.DecodeStandardSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
			now := time.Now()
			r = c.post("msg_forged", forged, map[string]string{"webhook-id": "msg_forged", "webhook-timestamp": strconv.FormatInt(now.Unix(), 10),
				"webhook-signature": signature.Sign(other, "msg_forged", now, forged)})
			if r.status != http.StatusUnauthorized || r.body["error"] != "unauthorized" {
				t.Fatalf("forged: %d %v", r.status, r.body)
			}
			// A correctly signed but stale request (replayed after 10 minutes) is refused too.
			old := now.Add(-10 * time.Minute)
			r = c.post("msg_old", forged, map[string]string{"webhook-id": "msg_old", "webhook-timestamp": strconv.FormatInt(old.Unix(), 10),
				"webhook-signature": signature.Sign(c.key, "msg_old", old, forged)})
			if r.status != http.StatusUnauthorized {
				t.Fatalf("stale: %d %v", r.status, r.body)
			}
			// Malformed and contradictory bodies are 400 with a reason; oversized 413.
			r = c.send("msg_bad_type", []byte(`{"type":"leaver","person":{"email":"john.smith@acme.test","status":"active"}}`))
			if r.status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(r.body["error"]), "contradicts") {
				t.Fatalf("contradiction: %d %v", r.status, r.body)
			}
			r = c.send("msg_big", bytes.Repeat([]byte("x"), 1<<20+1))
			if r.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("oversized: %d %v", r.status, r.body)
			}
			if n := streamMsgs(t, sys); n != 1 {
				t.Fatalf("refused requests were published: %d messages", n)
			}

			// A sentinel leaver proves the worker has drained everything before it; the
			// duplicate must not have caused a second call about jane.
			sam := plainMember(t, sb, jane)
			if r = c.send("msg_e2e_sentinel", leaverBody(sam)); r.status != http.StatusAccepted {
				t.Fatalf("sentinel: %d %v", r.status, r.body)
			}
			eventually(t, sam+" is gone", func() bool { _, ok := sb.Member(sam); return !ok })
			st = sb.Stats()
			if got := st.Mutations["member.remove"][jane]; got != 1 {
				t.Fatalf("jane removed %d times", got)
			}
			if n := callsAbout(sb.RequestLog(), logMark, "", janeM.ID, jane); n != 0 {
				t.Fatalf("the duplicate caused %d Sentry calls about jane", n)
			}
		})
	}
}

// plainMember returns a seeded active member the daemon may remove (role member,
// not IdP-provisioned), other than except.
func plainMember(t *testing.T, sb *sentrytest.Sandbox, except string) string {
	t.Helper()
	for _, m := range sb.Members() {
		if m.OrgRole == "member" && !m.Pending && !m.Flags["idp:provisioned"] && !strings.EqualFold(m.Email, except) {
			return m.Email
		}
	}
	t.Fatal("demo seed has no second plain member")
	return ""
}

// TestWorkerDedupesReplayedEvent replays an already processed event past
// JetStream's duplicate window (a different Nats-Msg-Id, the same event id): the
// worker's state dedupe acks it without calling Sentry.
func TestWorkerDedupesReplayedEvent(t *testing.T) {
	sys := mustRunMain(t, testRedisURL())
	sb := sys.sandbox
	c := newSignedClient(t, sys)
	const who = "jane.doe@acme.test"
	whoM, _ := sb.Member(who)
	if r := c.send("msg_replay_1", leaverBody(who)); r.status != http.StatusAccepted {
		t.Fatalf("leaver: %d %v", r.status, r.body)
	}
	eventually(t, who+" is gone", func() bool { _, ok := sb.Member(who); return !ok })
	logMark := len(sb.RequestLog())
	js, _ := jetstream.New(sys.nc)
	ev := events.Event{ID: "msg_replay_1", Source: "generic", Type: events.Leaver, OccurredAt: time.Now().UTC(), ReceivedAt: time.Now().UTC(),
		Person: events.Person{ID: "E-jane.doe", Email: who, Status: events.Terminated}}
	data, _ := events.Marshal(ev)
	m := nats.NewMsg(ev.Subject())
	m.Data = data
	if _, err := js.PublishMsg(context.Background(), m, jetstream.WithMsgID("replayed-after-window")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(context.Background(), events.StreamEvents, events.ConsumerWorker)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replay is acked", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.AckFloor.Stream == 2 && info.NumAckPending == 0
	})
	if n := callsAbout(sb.RequestLog(), logMark, "", whoM.ID, who); n != 0 {
		t.Fatalf("replayed event caused %d Sentry calls about %s", n, who)
	}
	if got := sb.Stats().Mutations["member.remove"][who]; got != 1 {
		t.Fatalf("member.remove = %d", got)
	}
}

// TestHealthAndReadiness checks the probes of both listeners.
func TestHealthAndReadiness(t *testing.T) {
	sys := mustRunMain(t, "")
	for _, addr := range []string{sys.httpAddr, sys.adminAddr} {
		for _, path := range []string{"/healthz", "/readyz"} {
			var resp *http.Response
			eventually(t, path+" answers 200", func() bool {
				r, err := http.Get("http://" + addr + path)
				if err != nil {
					return false
				}
				r.Body.Close()
				resp = r
				return r.StatusCode == http.StatusOK
			})
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s%s content type %q", addr, path, ct)
			}
		}
	}
	resp, err := http.Get("http://" + sys.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "go_goroutines") {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	// An unknown source is not open: 404.
	r, err := http.Post("http://"+sys.httpAddr+"/hooks/okta", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound {
		t.Fatalf("/hooks/okta without a secret: %d, want 404", r.StatusCode)
	}
}
