package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// TestRunAgainstSandboxWithSCIMToken starts `jml sandbox --scim-token` on
// its own, then the all-in-one against it with JML_SENTRY_URL,
// JML_SENTRY_TOKEN and JML_SENTRY_SCIM_TOKEN, and sends a leaver for an
// idp:provisioned member: the removal goes through the SCIM route, carried
// by the SCIM token (the sandbox logs the caller as "scim").
func TestRunAgainstSandboxWithSCIMToken(t *testing.T) {
	const userToken = "sntryu_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
	const scimToken = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- cmdSandbox(ctx, []string{"--addr", addr, "--token", userToken, "--scim-token", scimToken}, &syncWriter{w: &out}, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("sandbox shutdown: %v", err) // a lingering keep-alive can outlast its 5 s drain
		}
	})
	sbURL := "http://" + addr
	eventually(t, "the sandbox listens", func() bool {
		r, err := http.Get(sbURL + "/_sandbox/scim")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		var v sentrytest.SCIMView
		return json.NewDecoder(r.Body).Decode(&v) == nil && v.Token == scimToken && v.Enabled
	})
	if !strings.Contains(out.String(), "SCIM token (SCIM routes only): "+scimToken) {
		t.Fatalf("sandbox output lacks the SCIM token:\n%s", out.String())
	}

	const secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	var logs bytes.Buffer
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", DataDir: t.TempDir(), LogLevel: "debug", MaxBodyBytes: 1 << 20,
		StreamReplicas: 1, RedisURL: testRedisURL(), RedisPrefix: "jmltest:" + randomID() + ":", GenericSecret: secret,
		SentryURL: sbURL, SentryOrg: "acme", SentryToken: userToken, SentrySCIMToken: scimToken}
	sys, err := startAll(context.Background(), cfg, runOptions{sentryConfigured: true, stdout: io.Discard, logs: &syncWriter{w: &logs}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sys.Close()
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs.String())
		}
	})
	member := func(email string) bool {
		r, err := http.Get(sbURL + "/_sandbox/members?email=" + email)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}
	const john = "john.smith@acme.test" // idp:provisioned in the demo seed
	if !member(john) {
		t.Fatalf("demo seed lacks %s", john)
	}
	key, _ := signature.DecodeStandardSecret(secret)
	c := &signedClient{t: t, url: "http://" + sys.httpAddr + "/hooks/generic", key: key, client: &http.Client{Timeout: 10 * time.Second}}
	if r := c.send("msg_scim_token_leaver", leaverBody(john)); r.status != http.StatusAccepted {
		t.Fatalf("leaver: %d %v", r.status, r.body)
	}
	eventually(t, john+" is gone", func() bool { return !member(john) })

	r, err := http.Get(sbURL + "/_sandbox/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var reqs []sentrytest.LoggedRequest
	if err := json.NewDecoder(r.Body).Decode(&reqs); err != nil {
		t.Fatal(err)
	}
	var scimRemovals, otherRemovals int
	for _, q := range reqs {
		if q.Method != http.MethodDelete && q.Method != http.MethodPatch {
			continue
		}
		switch {
		case q.Pattern == sentrytest.PatternSCIMUser && q.Caller == "scim" && q.Status/100 == 2:
			scimRemovals++
		case q.Pattern == sentrytest.PatternSCIMUser || q.Pattern == sentrytest.PatternMember:
			otherRemovals++
		}
	}
	if scimRemovals != 1 || otherRemovals != 0 {
		t.Fatalf("removals: %d through SCIM with the SCIM token, %d otherwise; log %+v", scimRemovals, otherRemovals, reqs)
	}
}
