package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	out := &syncWriter{w: &bytes.Buffer{}}
	done := make(chan error, 1)
	go func() {
		done <- cmdSandbox(ctx, []string{"--addr", addr, "--token", userToken, "--scim-token", scimToken}, out, io.Discard)
	}()
	// The sandbox must drain at once: the daemon has closed its pooled
	// connections (sentry.Client.Close) by then. A connection dialed and never
	// used would hold http.Server.Shutdown for 5 s, its whole drain limit.
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sandbox shutdown: %v", err)
			}
		case <-time.After(4 * time.Second):
			t.Errorf("sandbox shutdown still draining after 4 s")
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
	logs := &syncWriter{w: &bytes.Buffer{}}
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", DataDir: t.TempDir(), LogLevel: "debug", MaxBodyBytes: 1 << 20,
		StreamReplicas: 1, RedisURL: testRedisURL(), RedisPrefix: "jmltest:" + randomID() + ":", GenericSecret: secret,
		SentryURL: sbURL, SentryOrg: "acme", SentryToken: userToken, SentrySCIMToken: scimToken}
	sys, err := startAll(context.Background(), cfg, runOptions{sentryConfigured: true, stdout: io.Discard, logs: logs})
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

	// jml doctor with the same environment: the API base (no region to
	// follow off sentry.io), SCIM enabled for the SCIM token, no secret shown.
	for k, v := range map[string]string{"JML_SENTRY_URL": sbURL, "JML_SENTRY_ORG": "acme", "JML_SENTRY_TOKEN": userToken,
		"JML_SENTRY_SCIM_TOKEN": scimToken, "JML_DATA_DIR": cfg.DataDir} {
		t.Setenv(k, v)
	}
	var doc bytes.Buffer
	_ = cmdDoctor(context.Background(), nil, &doc, io.Discard)
	for _, want := range []string{"ok    region         API at " + sbURL + " (JML_SENTRY_URL)", "ok    scim           enabled"} {
		if !strings.Contains(doc.String(), want) {
			t.Fatalf("doctor lacks %q:\n%s", want, doc.String())
		}
	}
	if strings.Contains(doc.String(), scimToken) || strings.Contains(doc.String(), userToken) {
		t.Fatalf("doctor shows a token:\n%s", doc.String())
	}
}

// TestRunEmbeddedSandboxSCIMToken: the all-in-one's own sandbox issues a SCIM
// token (generated into the data dir, mode 0600, reused on restart, never
// printed or logged), the daemon uses it for SCIM removals as
// JML_SENTRY_SCIM_TOKEN would be used, and the sandbox drains at once on Close.
func TestRunEmbeddedSandboxSCIMToken(t *testing.T) {
	cfg := config.Common{
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", SandboxToken: "sandbox",
		DataDir: t.TempDir(), LogLevel: "debug", MaxBodyBytes: 1 << 20, StreamReplicas: 1, RedisURL: testRedisURL(),
		RedisPrefix: "jmltest:" + randomID() + ":",
	}
	var banner bytes.Buffer
	logs := &syncWriter{w: &bytes.Buffer{}}
	sys, err := startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			sys.Close()
		}
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs.String())
		}
	})
	path := filepath.Join(cfg.DataDir, sandboxSCIMTokenFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", path, fi, err)
	}
	b, _ := os.ReadFile(path)
	tok := strings.TrimSpace(string(b))
	if len(tok) != 64 {
		t.Fatalf("generated SCIM token %q: want 64 hex digits", tok)
	}
	if v := sys.sandbox.SCIM(); v.Token != tok || !v.Enabled {
		t.Fatalf("sandbox SCIM settings %+v, want the token of %s", v, path)
	}
	sys.banner(&banner)
	if !strings.Contains(banner.String(), path) || strings.Contains(banner.String(), tok) {
		t.Fatalf("banner must name %s and never show the token:\n%s", path, banner.String())
	}

	const john = "john.smith@acme.test" // idp:provisioned in the demo seed
	c := newSignedClient(t, sys)
	if r := c.send("msg_embedded_scim_leaver", leaverBody(john)); r.status != http.StatusAccepted {
		t.Fatalf("leaver: %d %v", r.status, r.body)
	}
	eventually(t, john+" is gone", func() bool { _, ok := sys.sandbox.Member(john); return !ok })
	scim := 0
	for _, q := range sys.sandbox.RequestLog() {
		if q.Pattern == sentrytest.PatternSCIMUser && q.Method == http.MethodDelete && q.Status/100 == 2 {
			if q.Caller != "scim" {
				t.Fatalf("SCIM removal by %q, want the SCIM token", q.Caller)
			}
			scim++
		}
	}
	if scim != 1 {
		t.Fatalf("%d SCIM removals, want 1", scim)
	}

	sys.Close()
	closed = true
	if sys.sandboxDrain > 2*time.Second {
		t.Fatalf("the embedded sandbox took %v to drain", sys.sandboxDrain)
	}
	if strings.Contains(logs.String(), tok) {
		t.Fatal("the SCIM token is in the logs")
	}

	// A restart reuses the token.
	cfg.RedisPrefix = "jmltest:" + randomID() + ":"
	sys2, err := startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer sys2.Close()
	if v := sys2.sandbox.SCIM(); v.Token != tok {
		t.Fatal("restart generated a new SCIM token")
	}
}
