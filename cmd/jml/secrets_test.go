package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/signature"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// startPrivateRedis runs a redis-server that requires a password.
func startPrivateRedis(t *testing.T, password string) string {
	t.Helper()
	addr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", password)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for range 100 {
		if c, err := (&net.Dialer{}).Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr
}

// TestNoSecretAnywhere runs a lifecycle with every kind of secret configured and
// scans logs, spans, metrics, evidence, dead letters and --json output for them.
func TestNoSecretAnywhere(t *testing.T) {
	const (
		genericSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
		sentryToken   = "sntryu_5ecre75ecre75ecre75ecre75ecre75ecre75ecre75ecre75ecre7abcdef01"
		scimToken     = "scim-5ecret-token-value-0123456789"
		oktaAuth      = "Basic b2t0YTpzM2NyM3RQYXNzd29yZA=="
		adminToken    = "admin-5ecret-0123456789abcdef"
		redisPassword = "redis-5ecret-pw-0123456789"
		alertSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	)
	secrets := []string{genericSecret, strings.TrimPrefix(genericSecret, "whsec_"), sentryToken, scimToken, oktaAuth,
		strings.TrimPrefix(oktaAuth, "Basic "), adminToken, redisPassword, alertSecret, strings.TrimPrefix(alertSecret, "whsec_")}

	redisAddr := startPrivateRedis(t, redisPassword)
	sb := sentrytest.NewServer(t, sentrytest.Options{Token: sentryToken, SCIMToken: scimToken})
	var alertBodies bytes.Buffer
	var amu sync.Mutex
	alerts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		amu.Lock()
		alertBodies.Write(b)
		for k, v := range r.Header {
			if k != "Webhook-Signature" {
				fmt.Fprintf(&alertBodies, "%s: %s\n", k, v)
			}
		}
		amu.Unlock()
	}))
	defer alerts.Close()

	t.Setenv("JML_SOURCE_OKTA_SECRET", oktaAuth)
	t.Setenv("JML_SOURCE_SCIM_SECRET", scimToken)
	t.Setenv("JML_SOURCE_GENERIC_SECRET", genericSecret)
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), telemetry.Options{SpanExporter: exp, Synchronous: true})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", DataDir: t.TempDir(), LogLevel: "debug", MaxBodyBytes: 1 << 20,
		StreamReplicas: 1, RedisURL: "redis://:" + redisPassword + "@" + redisAddr + "/0", RedisPrefix: "jml:", GenericSecret: genericSecret,
		SentryURL: sb.URL, SentryOrg: "acme", SentryToken: sentryToken, SentrySCIMToken: scimToken, AdminToken: adminToken,
		AlertWebhookURL: alerts.URL, AlertWebhookSecret: alertSecret}
	sys, err := startAll(context.Background(), cfg, runOptions{sentryConfigured: true, stdout: io.Discard, logs: logs, telemetry: tel})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	// The embedded NATS server's generated password is a secret too.
	if u, err := url.Parse(sys.ns.ClientURL()); err == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			secrets = append(secrets, pw)
		} else {
			t.Fatalf("the embedded NATS URL carries no password: %s", sys.ns.RedactedURL())
		}
	}

	key, _ := signature.DecodeStandardSecret(genericSecret)
	c := &signedClient{t: t, url: "http://" + sys.httpAddr + "/hooks/generic", key: key, client: &http.Client{Timeout: 10 * time.Second}}
	var sigs []string
	sendSigned := func(id string, body []byte) reply {
		now := time.Now()
		sig := signature.Sign(key, id, time.Unix(now.Unix(), 0), body)
		sigs = append(sigs, strings.TrimPrefix(sig, "v1,"))
		return c.post(id, body, map[string]string{"webhook-id": id, "webhook-timestamp": strconv.FormatInt(now.Unix(), 10), "webhook-signature": sig})
	}
	if r := sendSigned("msg_sec_join", []byte(`{"type":"joiner","person":{"email":"zoe.new@acme.test","status":"active"}}`)); r.status != http.StatusAccepted {
		t.Fatalf("joiner: %d", r.status)
	}
	if r := sendSigned("msg_sec_leave", leaverBody("jane.doe@acme.test")); r.status != http.StatusAccepted {
		t.Fatalf("leaver: %d", r.status)
	}
	if r := sendSigned("msg_sec_owner", leaverBody("olivia.owner@acme.test")); r.status != http.StatusAccepted { // needs_human: an alert
		t.Fatalf("owner leaver: %d", r.status)
	}
	// Refused requests: a bad signature and a wrong Okta header.
	badSig := "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
	c.post("msg_bad", leaverBody("bob.martin@acme.test"), map[string]string{"webhook-id": "msg_bad", "webhook-timestamp": strconv.FormatInt(time.Now().Unix(), 10), "webhook-signature": badSig})
	req, _ := http.NewRequest(http.MethodPost, "http://"+sys.httpAddr+"/hooks/okta", strings.NewReader(`{"data":{"events":[]}}`))
	req.Header.Set("Authorization", "Basic d3Jvbmc6d3Jvbmc=")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	// A dead letter.
	js, _ := jetstream.New(sys.nc)
	m := nats.NewMsg("jml.events.generic.leaver")
	m.Data = []byte("garbage")
	_, _ = js.PublishMsg(context.Background(), m)

	eventually(t, "jane is removed and zoe invited", func() bool {
		_, jane := sb.Member("jane.doe@acme.test")
		_, zoe := sb.Member("zoe.new@acme.test")
		return !jane && zoe
	})

	// Gather every output an operator or an attacker could read.
	var all bytes.Buffer
	t.Setenv("JML_ADMIN_ADDR", sys.adminAddr)
	t.Setenv("JML_ADMIN_TOKEN", adminToken)
	for _, args := range [][]string{{"plan", "--email", "jane.doe@acme.test", "--json"}, {"evidence", "--email", "jane.doe@acme.test"},
		{"evidence", "--email", "olivia.owner@acme.test"}, {"dlq", "list"}, {"status"}, {"unresolved"}} {
		var out bytes.Buffer
		eventually(t, strings.Join(args, " ")+" answers", func() bool {
			out.Reset()
			return dispatch(context.Background(), args, &out, io.Discard) == nil
		})
		all.Write(out.Bytes())
	}
	resp, err := http.Get("http://" + sys.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	all.Write(metrics)
	for _, s := range exp.GetSpans() {
		b, _ := json.Marshal(s.Attributes)
		all.Write(b)
		all.WriteString(s.Name)
		for _, e := range s.Events {
			b, _ := json.Marshal(e.Attributes)
			all.Write(b)
		}
	}
	eventually(t, "the needs_human alert is delivered", func() bool {
		amu.Lock()
		defer amu.Unlock()
		return strings.Contains(alertBodies.String(), "needs_human")
	})
	amu.Lock()
	all.Write(alertBodies.Bytes())
	amu.Unlock()
	all.WriteString(logs.String())
	if !strings.Contains(logs.String(), "webhook refused") || !strings.Contains(all.String(), "jane.doe@acme.test") {
		t.Fatal("the scan saw no logs or no outputs: the test would prove nothing")
	}
	for _, s := range append(secrets, append(sigs, strings.TrimPrefix(badSig, "v1,"))...) {
		if strings.Contains(all.String(), s) {
			i := strings.Index(all.String(), s)
			t.Errorf("secret %q…%q found: …%s…", s[:4], s[len(s)-4:], all.String()[max(0, i-80):min(len(all.String()), i+len(s)+20)])
		}
	}
}
